"""``instrumentd classify``'s command line: the output format each --format writes, exit 1 when a file
cannot be read, one-line errors for bad flags and settings."""

import csv
import io
import json

import pytest

from instrumentd.model.classes import CLASSES

from ...conftest import instrumentd, one_line_error, side_by_side


def _run(*args):
    return instrumentd("classify", *args, timeout=300)


def test_csv_and_table(clips):
    clip = str(clips / "b.flac")
    out, table = side_by_side(lambda: _run(clip, "--format", "csv"), lambda: _run(clip))
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == 1 and set(CLASSES) <= set(rows[0])
    assert table.returncode == 0 and "b.flac" in table.stdout


def test_bad_file_among_good_ones(clips, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVE")
    out = _run(str(clips / "b.flac"), str(bad), "--format", "jsonl")
    assert out.returncode == 1  # ran, but a file could not be read
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert "error" not in records[0] and "broken.wav" in records[1]["error"]


@pytest.mark.parametrize("args,message", [
    (["/does/not/exist"], "no such file"),
    (["--hop", "0", "x"], "--hop"),
    (["--checkpoint", "/nope.safetensors", "x.wav"], None),
])
def test_user_errors_are_one_line(args, message, tmp_path):
    out = _run(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    if message:
        assert message in out.stderr



@pytest.mark.parametrize("args,fragments", [
    (["--smooth", "0"], ["--smooth must be at least 1 window, got 0"]),
    (["--on", "0.2", "--off", "0.5"], ["need 0 < --off <= --on <= 1", "--on 0.2, --off 0.5"]),
    (["--hop", "-1"], ["--hop must be positive seconds, got -1.0"]),
])
def test_segment_settings_are_one_line_errors(args, fragments, clips):
    """``--segments`` checks its own settings before it looks for audio or loads a model."""
    out = _run(str(clips / "b.flac"), "--segments", *args)
    assert out.returncode == 2 and out.stdout == ""
    one_line_error(out.stderr, "classify", *fragments)
