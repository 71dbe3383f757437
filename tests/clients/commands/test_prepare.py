"""``instrumentd prepare``, the real command, on the fixture corpus: one .pt a clip, a bundle, one-line errors."""

from __future__ import annotations

import pytest
import torch

from instrumentd.model.classes import CLASSES
from instrumentd.training import dataset

from ...conftest import instrumentd, one_line_error
from .conftest import TRAIN_FILES


@pytest.mark.slow
def test_prepare_writes_a_pt_a_clip_and_a_bundle(irmas_shared, tmp_path):
    out, packed = tmp_path / "features", tmp_path / "train.safetensors"
    run = instrumentd("prepare", str(irmas_shared), str(out), "--device", "cpu", "--bundle", str(packed))
    assert run.returncode == 0, run.stderr[-2000:]
    n = sum(map(len, TRAIN_FILES.values()))
    assert f"{n} clips prepared, 0 already there, in {out}" in run.stdout
    assert f"{n} clips packed into {packed}" in run.stdout
    for cls, names in TRAIN_FILES.items():
        for name in names:
            d = torch.load(out / cls / name.replace(".wav", ".pt"), weights_only=True)
            assert CLASSES[int(d["label"])] == cls
    assert dataset.load_features(packed).n_clips == n


def test_bad_input_is_one_line(tmp_path):
    run = instrumentd("prepare", str(tmp_path), str(tmp_path / "out"), "--batch-size", "0")
    assert run.returncode == 2
    one_line_error(run.stderr, "prepare", "--batch-size must be at least 1, got 0")
