"""Labelling files (:mod:`instrumentd.clients.classify`): window scores, the S2 labels, silence, what ffmpeg decodes."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from instrumentd.model.classes import CLASSES

from ..conftest import side_by_side


def _run(*args):
    return subprocess.run([sys.executable, "-m", "instrumentd", "classify", *args],
                          capture_output=True, text=True, timeout=300)


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
    out, table = side_by_side(lambda: _run(str(path), "--format", "jsonl"), lambda: _run(str(path)))
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["labels"] == [] and record["none"] == "silence"
    assert all(w["none"] == "silence" and w["level_db"] == -120.0 for w in record["windows"])
    assert "- (silence)" in table.stdout


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
