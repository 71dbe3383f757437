"""``instrumentd synth-stems`` through the command's entry point: bad counts, lengths, banks and classes,
and --add without a bank, are one line each."""

from __future__ import annotations

import pytest

from instrumentd.clients.cli import main

from ...conftest import one_line_error


@pytest.mark.parametrize("flags, message", [
    (["--per-class", "-2"], "--per-class must be >= 0, got -2"),
    (["--seconds", "0.5"], "stems must be at least 1 s long, got 0.5"),
    (["--banks", "nosuchbank"], "unknown bank 'nosuchbank'; choose from"),
    (["--acc-bass", "2"], "--acc-bass must be a share of the accompaniments, 0-1, got 2.0"),
    (["--straight", "-1"], "--straight must be a share of the solo stems, 0-1, got -1.0"),
    (["--classes", "cel,cello"], "unknown class 'cello'; choose from cel, cla"),
    (["--classes", ","], "--classes names no class; choose from cel, cla"),
    (["--add"], "no index.json to add stems to (leave out --add to start a bank)"),
])
def test_bad_values_are_one_line_and_write_nothing(tmp_path, capsys, flags, message):
    assert main(["synth-stems", str(tmp_path / "bank"), *flags]) == 2
    one_line_error(capsys.readouterr().err, "synth-stems", message)
    assert not (tmp_path / "bank").exists()
