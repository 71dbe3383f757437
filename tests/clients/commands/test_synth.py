"""``instrumentd synth``, the real command: a tiny corpus in the IRMAS layout with its manifest, one-line errors."""

from __future__ import annotations

import csv

import pytest
import soundfile

from instrumentd.model.classes import CLASSES

from ...conftest import instrumentd, one_line_error


def test_a_soundfont_reserved_for_evaluation_is_a_one_line_error(tmp_path):
    run = instrumentd("synth", str(tmp_path / "c"), "--per-class", "1", "--soundfonts", "fluidr3,musescore")
    assert run.returncode == 2
    one_line_error(run.stderr, "synth", "SoundFont 'musescore' is reserved for evaluation; train on fluidr3, timgm6mb")


@pytest.mark.slow
def test_one_clip_a_class_in_the_irmas_layout(tmp_path, fluidsynth_available):
    corpus = tmp_path / "c"
    run = instrumentd("synth", str(corpus), "--per-class", "1", "--test-clips", "0", "--soundfonts", "timgm6mb",
                      "--processes", "2")
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"11 clips in {corpus}" in run.stdout
    clips = sorted((corpus / "IRMAS-TrainingData").glob("*/*.wav"))
    assert sorted(p.parent.name for p in clips) == sorted(CLASSES)
    audio, sr = soundfile.read(clips[0])
    assert sr == 44100 and len(audio) == 3 * sr and abs(audio).max() > 0.01
    with open(corpus / "synth.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 11 and {r["soundfont"] for r in rows} == {"timgm6mb"}
    assert sorted(r["labels"] for r in rows) == sorted(CLASSES)


def test_negative_counts_are_one_line(tmp_path):
    run = instrumentd("synth", str(tmp_path / "c"), "--per-class", "-1")
    assert run.returncode == 2
    one_line_error(run.stderr, "synth", "clip counts must be >= 0, got per_class=-1")
