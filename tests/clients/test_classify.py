import csv
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from instrumentd.model.classes import CLASSES


def _run(*args):
    return subprocess.run([sys.executable, "-m", "instrumentd", "classify", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def clips(tmp_path_factory, renders):
    """An IRMAS-test-like folder: two clips of different lengths with .txt labels beside them."""
    root = tmp_path_factory.mktemp("irmas") / "IRMAS-TestingData-Part1" / "Part1"
    root.mkdir(parents=True)
    long = np.concatenate([renders["mix"], renders["violin"]])  # 6 s
    soundfile.write(root / "a song-1.wav", np.stack([long, long], 1), 44100)
    (root / "a song-1.txt").write_text("flu\t\npia\t\nvio\t\n")
    soundfile.write(root / "b.flac", renders["flute"][:44100], 44100)  # 1 s: shorter than one window
    return root


def test_jsonl_one_object_per_file(clips):
    out = _run(str(clips.parent.parent), "--format", "jsonl", "--pitch-engine", "librosa")
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["path"].rsplit("/", 1)[1] for r in records] == ["a song-1.wav", "b.flac"]
    long, short = records
    assert set(long) >= {"path", "labels", "scores", "windows"}
    assert list(long["scores"]) == list(CLASSES)
    named = [w for w in long["windows"] if w["none"] is None]
    assert named, "an audible render names an instrument"
    mean = {c: np.mean([w["probabilities"][c] for w in named]) for c in CLASSES}
    assert long["scores"] == pytest.approx(mean, abs=1e-5)  # calibrated: the mean, not S2's ratio to the top
    s2 = {c: sum(w["probabilities"][c] for w in named) for c in CLASSES}
    assert set(long["labels"]) == {c for c in CLASSES if s2[c] >= 0.5 * max(s2.values()) - 1e-6}
    assert long["none"] is None
    assert [w["start"] for w in long["windows"]] == [0.0, 1.5, 3.0]
    for w in long["windows"]:
        assert sum(w["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert len(short["windows"]) == 1
    if not long["trained"]:
        assert "UNTRAINED" in out.stderr


def test_digital_silence_names_no_instrument(tmp_path):
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros(5 * 44100, np.float32), 44100)
    out = _run(str(path), "--format", "jsonl")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["labels"] == [] and record["none"] == "silence"
    assert all(w["none"] == "silence" and w["level_db"] == -120.0 for w in record["windows"])
    table = _run(str(path))
    assert "- (silence)" in table.stdout


def test_csv_and_table(clips):
    out = _run(str(clips / "b.flac"), "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == 1 and set(CLASSES) <= set(rows[0])
    table = _run(str(clips / "b.flac"))
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


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_files_only_ffmpeg_decodes_are_found_and_classified(clips, tmp_path):
    """An .m4a and a video's audio track, found in a folder and labelled like any WAV."""
    src, folder = str(clips / "b.flac"), tmp_path / "media"
    folder.mkdir()
    run = ["ffmpeg", "-nostdin", "-y", "-loglevel", "error"]
    subprocess.run([*run, "-i", src, "-c:a", "aac", str(folder / "a.m4a")], check=True, timeout=60)
    subprocess.run([*run, "-i", src, "-f", "lavfi", "-i", "testsrc=duration=1:size=64x64:rate=10", "-c:v", "mpeg4",
                    "-c:a", "aac", "-shortest", str(folder / "v.mp4")], check=True, timeout=60)
    out = _run(str(folder), "--format", "jsonl")
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["path"].rsplit("/", 1)[1] for r in records] == ["a.m4a", "v.mp4"]
    assert all(len(r["windows"]) == 1 and "error" not in r for r in records)
