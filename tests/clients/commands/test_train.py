"""``instrumentd train``, the real command: a checkpoint whose metadata says how it was trained, its history
and curves beside it, one-line errors."""

from __future__ import annotations

import json

import pytest

from instrumentd.model import read_metadata

from ...conftest import instrumentd, one_line_error
from .conftest import TRAIN_FILES


@pytest.mark.slow
def test_one_epoch_writes_a_trained_checkpoint_its_history_and_curves(prepared, tmp_path):
    ckpt = tmp_path / "m.safetensors"
    run = instrumentd("train", str(prepared), "--out", str(ckpt), "--epochs", "1", "--batch-size", "4",
                      "--device", "cpu", "--variant", "mel")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().endswith(f"checkpoint: {ckpt}") and "best epoch 1: validation accuracy" in run.stdout
    meta = read_metadata(ckpt)
    assert meta["trained"] and meta["variant"] == "mel"
    assert meta["training"]["data"]["clips"] == sum(map(len, TRAIN_FILES.values()))
    assert len(json.loads((tmp_path / "m.history.json").read_text())) == 1
    assert (tmp_path / "m.curves.png").stat().st_size > 0


def test_features_that_are_not_there_are_one_line(tmp_path):
    run = instrumentd("train", str(tmp_path / "nothing"), "--out", str(tmp_path / "m.safetensors"), "--device", "cpu")
    assert run.returncode == 2
    one_line_error(run.stderr, "train", "nothing")
