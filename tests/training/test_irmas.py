"""IRMAS layout reading: names, tags, multi-label test files, and one-line errors for broken corpora."""

from __future__ import annotations

import pytest

from instrumentd.training import irmas as corpus
from instrumentd.training.irmas import CorpusError, read_labels, training_clips

from .conftest import TEST_FILES, TRAIN_FILES


def test_training_clips_follow_folders_and_names(irmas):
    clips = training_clips(irmas)
    assert len(clips) == sum(map(len, TRAIN_FILES.values()))
    assert {c.labels for c in clips} == {("cel",), ("flu",), ("voi",)}
    assert all(c.soundfont == "" for c in clips)  # real recordings: no SoundFont
    assert "IRMAS-TrainingData/flu/[flu][dru][pop_roc]0101__2.wav" in {c.name for c in clips}
    # the training folder itself works as the corpus argument too
    assert [c.name for c in training_clips(irmas / "IRMAS-TrainingData")] == [c.name for c in clips]


def test_test_clips_are_multi_label_in_class_order(irmas):
    clips = {c.name.removesuffix(".wav"): c.labels for c in corpus.test_clips(irmas)}
    assert clips == {k: v for k, v in TEST_FILES.items()}
    only_part2 = corpus.test_clips(irmas / "IRMAS-TestingData-Part2")
    assert [c.labels for c in only_part2] == [("cel", "pia", "vio")]


def test_label_file_order_and_whitespace(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("voi\t\n\ncel \t\r\n")
    assert read_labels(f) == ("cel", "voi")


@pytest.mark.parametrize("break_it, message", [
    (lambda r: (r / "IRMAS-TrainingData" / "cel" / "[cel][cla]0001__1.wav").rename(
        r / "IRMAS-TrainingData" / "cel" / "cello-1.wav"), "cello-1.wav: name does not follow"),
    (lambda r: (r / "IRMAS-TrainingData" / "cel" / "[cel][cla]0001__1.wav").rename(
        r / "IRMAS-TrainingData" / "cel" / "[vio][cla]0001__1.wav"), "says [vio] but it lies in the cel folder"),
    (lambda r: (r / "IRMAS-TrainingData" / "bass").mkdir(), "bass: not a class folder"),
])
def test_broken_training_part(irmas, break_it, message):
    break_it(irmas)
    with pytest.raises(CorpusError, match=message.replace("[", r"\[").replace("]", r"\]")):
        training_clips(irmas)


def test_missing_training_part(tmp_path):
    with pytest.raises(CorpusError, match="no IRMAS-TrainingData folder"):
        training_clips(tmp_path)


@pytest.mark.parametrize("break_it, message", [
    (lambda r: (r / "IRMAS-TestingData-Part1/Part1/01 - Lost-7.txt").unlink(), "01 - Lost-7.txt: label file missing"),
    (lambda r: (r / "IRMAS-TestingData-Part3/Part3/Song 4-1.txt").write_text("flu\t\nbanjo\t\n"), "unknown label 'banjo'"),
    (lambda r: (r / "IRMAS-TestingData-Part3/Part3/Song 4-1.txt").write_text("\n"), "lists no class"),
    (lambda r: (r / "IRMAS-TestingData-Part3/Part3/Song 4-1.txt").write_bytes(b"\xff\xfe\xfa"), "not text"),
])
def test_broken_test_part(irmas, break_it, message):
    break_it(irmas)
    with pytest.raises(CorpusError, match=message):
        corpus.test_clips(irmas)


def test_missing_test_parts(tmp_path):
    with pytest.raises(CorpusError, match="no test part"):
        corpus.test_clips(tmp_path)
