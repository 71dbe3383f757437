"""Evaluation: Table 3 metrics against hand-computed cases, S2 over windows, reports and plots."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from instrumentd.model.classes import CLASSES
from instrumentd.model.recognizer import Recognizer
from instrumentd.pipeline.config import DEFAULT
from instrumentd.training import evaluate as E
from instrumentd.training.dataset import FeatureSet


def onehot(*names: str) -> list[int]:
    return [int(c in names) for c in CLASSES]


def test_metrics_by_hand():
    truth = np.array([onehot("cel"), onehot("cel", "cla"), onehot("cla")])
    pred = np.array([onehot("cel", "cla"), onehot("cel"), onehot()])
    m = E.metrics(truth, pred)
    # cel: TP 2, FP 0, FN 0; cla: TP 0, FP 1, FN 2; nine classes never present nor predicted
    assert m["cel"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert m["cla"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    # micro: TP 2, FP 1, FN 2
    assert m["micro"]["precision"] == pytest.approx(2 / 3)
    assert m["micro"]["recall"] == pytest.approx(1 / 2)
    assert m["micro"]["f1"] == pytest.approx(4 / 7)
    # macro: the mean over all 11 classes; weighted: by support (2 and 2)
    assert m["macro"]["f1"] == pytest.approx(1 / 11)
    assert m["weighted"]["precision"] == pytest.approx(0.5)
    assert m["weighted"]["f1"] == pytest.approx(0.5)


class WindowClassNet(nn.Module):
    """Logits 20 * one_hot(k) where k is written in the first mel value of each window."""

    def forward(self, mel, mask):
        k = (-mel[:, 0, 0, 0]).round().long()
        return 20.0 * nn.functional.one_hot(k, len(CLASSES)).float()

    def embed(self, mel, mask):
        return mel[:, 0, :4, 0]


def test_s2_over_windows_and_report(tmp_path):
    # clip 0 (fluidr3): windows say cel, cel, cla -> S2 cel 1, cla 0.5 -> both labels; mean scores 2/3, 1/3
    # clip 1 (musescore): windows say voi, pia -> pia 1, voi 1
    classes = [0, 0, 1, 10, 6]
    mel = torch.full((5, 1, 128, 100), -40.0)
    mel[:, 0, 0, 0] = -torch.tensor(classes, dtype=torch.float32)
    features = FeatureSet(mel, torch.full((5, 100), -1), torch.tensor([0, 0, 0, 1, 1]),
                          torch.tensor([onehot("cel"), onehot("pia", "voi")]), ["a.wav", "b.wav"],
                          ["fluidr3", "musescore"], {"split": "test"})
    meta = {"variant": "cross", "classes": list(CLASSES), "features": DEFAULT.to_dict(), "trained": True,
            "weights_sha256": "0" * 64}
    rec = Recognizer(WindowClassNet(), meta, torch.device("cpu"))
    scores = E.scores_from_features(rec, features)
    assert scores.scores[0][:2] == pytest.approx([2 / 3, 1 / 3], abs=1e-6)
    rep = E.report(scores)
    assert rep["predictions"][0]["predicted"] == ["cel", "cla"]
    assert rep["predictions"][1]["predicted"] == ["pia", "voi"]
    assert rep["metrics"]["micro"]["precision"] == pytest.approx(3 / 4)
    assert rep["metrics"]["micro"]["recall"] == pytest.approx(1.0)
    assert rep["by_soundfont"]["musescore"]["micro"]["f1"] == pytest.approx(1.0)
    assert rep["by_soundfont"]["fluidr3"]["micro"]["precision"] == pytest.approx(0.5)
    js, md = E.write_reports(rep, tmp_path, "fixture")
    text = md.read_text()
    assert "| cla (Clarinet) | 0.00 | 0.00 | 0.00 | 0 |" in text and "| musescore | 1 | 1.00 |" in text
    E.plot_per_class(rep, tmp_path / "per_class.png")
    vectors, labels = E.embeddings(rec, features)
    assert vectors.shape == (3, 4) and labels.tolist() == [0, 0, 0]  # windows of the single-label clip
    assert (tmp_path / "per_class.png").stat().st_size > 10_000


def _fixture_recognizer(decision: dict | None = None) -> Recognizer:
    meta = {"variant": "cross", "classes": list(CLASSES), "features": DEFAULT.to_dict(), "trained": True,
            "weights_sha256": "0" * 64, **({"decision": decision} if decision else {})}
    return Recognizer(WindowClassNet(), meta, torch.device("cpu"))


class UnsureNet(WindowClassNet):
    """Window k >= 0: a sure vote for class k; k = -1: the same logit for every class (probability 1/11)."""

    def forward(self, mel, mask):
        k = (-mel[:, 0, 0, 0]).round().long()
        sure = 20.0 * nn.functional.one_hot(k.clamp_min(0), len(CLASSES)).float()
        return torch.where((k < 0)[:, None], torch.zeros_like(sure), sure)


def test_only_two_label_clips_evaluate_without_a_tsne():
    # IRMAS's own test clips can all carry two labels: no window belongs to a single-label clip
    mel = torch.full((2, 1, 128, 100), -40.0)
    mel[:, 0, 0, 0] = -4.0  # gel
    features = FeatureSet(mel, torch.full((2, 100), -1), torch.tensor([0, 0]),
                          torch.tensor([onehot("gel", "voi")]), ["two.wav"], [""], {"split": "test"})
    rec = _fixture_recognizer()
    assert E.report(E.scores_from_features(rec, features))["clips"] == 1
    vectors, labels = E.embeddings(rec, features)
    assert len(vectors) == 0 and len(labels) == 0


def test_unsure_windows_name_no_instrument_and_the_report_counts_it():
    # clip 0: two unsure windows (non-music, expects no label); clip 1: sure cel, sure cel, one unsure
    mel = torch.full((5, 1, 128, 100), -40.0)
    mel[:, 0, 0, 0] = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0])  # -k: k = -1 (unsure) or 0 (cel)
    features = FeatureSet(mel, torch.full((5, 100), -1), torch.tensor([0, 0, 1, 1, 1]),
                          torch.tensor([onehot(), onehot("cel")]), ["noise.wav", "cello.wav"], ["", ""],
                          {"split": "test"})
    meta = {"variant": "cross", "classes": list(CLASSES), "features": DEFAULT.to_dict(), "trained": True,
            "weights_sha256": "0" * 64, "decision": {"min_confidence": 0.5}}
    rec = Recognizer(UnsureNet(), meta, torch.device("cpu"))
    scores = E.scores_from_features(rec, features)
    assert scores.none == ["no instrument", None]
    assert scores.predicted.tolist() == [onehot(), onehot("cel")]
    assert scores.scores[1][0] == pytest.approx(1.0, abs=1e-6)  # the mean over the two named windows
    rep = E.report(scores)
    assert rep["rejection"] == {"non_music_clips": 1, "non_music_without_label": 1.0,
                                "reasons": {"no instrument": 1}, "music_clips": 1, "music_with_label": 1.0}
    assert "Non-music clips without a label: 100% of 1" in E.markdown(rep, "t")
