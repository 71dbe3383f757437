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
    # clip 0 (fluidr3): windows say cel, cel, cla -> S2 scores cel 1, cla 0.5 -> both labels
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
    assert scores.scores[0][:2] == pytest.approx([1.0, 0.5], abs=1e-6)
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
