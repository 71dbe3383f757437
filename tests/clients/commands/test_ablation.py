"""``instrumentd ablation``: the table of the rows asked for, from a stem bank or prepared features, and
one-line errors for rows and inputs that do not go together."""

from __future__ import annotations

import pytest

from instrumentd.clients.cli import main

from ...conftest import instrumentd, one_line_error


@pytest.mark.slow
def test_ablation_command_on_a_stem_bank(stem_bank, tmp_path, capsys):
    code = main(["ablation", str(stem_bank), "--out", str(tmp_path), "--rows", "mask", "--epochs", "1",
                 "--clips", "22", "--test-clips", "8", "--batch-size", "8", "--device", "cpu"])
    assert code == 0
    assert "| MaskCNN-only |" in capsys.readouterr().out
    assert (tmp_path / "mask.json").is_file() and (tmp_path / "mask.safetensors").is_file()
    assert main(["ablation", str(stem_bank), "somewhere", "--out", str(tmp_path)]) == 2


@pytest.mark.slow
def test_prepared_features_give_table_4s_row(prepared, tmp_path):
    run = instrumentd("ablation", str(prepared), str(prepared), "--out", str(tmp_path), "--rows", "mel",
                      "--epochs", "1", "--batch-size", "8", "--device", "cpu")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "| MelCNN-only |" in run.stdout and (tmp_path / "mel.json").is_file()


@pytest.mark.parametrize("args, message", [
    (["--rows", "mel,bogus"], "--rows: unknown row 'bogus'"),
    ([], "TEST (prepared test features) is needed unless FEATURES is a stem bank"),
])
def test_bad_rows_and_missing_test_features_are_one_line(prepared, tmp_path, capsys, args, message):
    assert main(["ablation", str(prepared), "--out", str(tmp_path), *args]) == 2
    one_line_error(capsys.readouterr().err, "ablation", message)
