"""``instrumentd record``'s command line: a file that is not an event file and a bad --replay are one-line
errors that write nothing."""

from __future__ import annotations

import subprocess
import sys

from instrumentd.clients.cli import main

from ...conftest import one_line_error


def test_a_file_that_is_not_an_event_file_is_one_line(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all, but long enough to have a header" * 20)
    out = subprocess.run([sys.executable, "-m", "instrumentd", "record", "--db", str(text)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "notes.txt" in out.stderr


def test_a_bad_replay_endpoint_is_one_line_and_no_file_is_made(tmp_path, capsys):
    db = tmp_path / "events.sqlite"
    assert main(["record", "--db", str(db), "--connect", "tcp://127.0.0.1:1", "--replay", "127.0.0.1:2"]) == 2
    one_line_error(capsys.readouterr().err, "record", "--replay '127.0.0.1:2' is not tcp://")
    assert not db.exists()
