"""Ablation: every row of Tables 4 and 5 is trained, tested and written."""

from __future__ import annotations

import pytest
import torch

from instrumentd.training import dataset
from instrumentd.training.ablation import TABLE4, ablation, collect, markdown, with_clean_mask
from instrumentd.training.train import TrainConfig


def drop_every_other_frame(mask: torch.Tensor) -> torch.Tensor:
    """A stand-in cleaner with a known effect: odd frames unvoiced."""
    out = mask.clone()
    out[..., 1::2] = 0
    return out


def test_clean_mask_replaces_bands(prepared):
    features = dataset.load_features(prepared, "train")
    clean = with_clean_mask(features, drop_every_other_frame)
    assert torch.equal(clean.band[:, ::2], features.band[:, ::2])
    assert (clean.band[:, 1::2] == -1).all() and clean.meta["mask"] == "clean"


@pytest.mark.slow
def test_tables_4_and_5(prepared, tmp_path):
    train_set, test_set = dataset.load_features(prepared, "train"), dataset.load_features(prepared, "test")
    results = ablation(train_set, test_set, TrainConfig(epochs=1, batch_size=8), tmp_path, drop_every_other_frame)
    assert list(results["table4"]) == list(TABLE4)
    assert set(results["table5"]) == {"noisy", "clean"}
    for row in [*results["table4"].values(), results["table5"]["clean"]]:
        assert 0 <= row["micro_f1"] <= 1 and 0 <= row["macro_f1"] <= 1
    assert results["table5"]["noisy"] is results["table4"]["cross"]
    assert len(list(tmp_path.glob("*.safetensors"))) == 5
    text = markdown(results)
    assert "| MelCNN-only |" in text and "| clean |" in text


def test_clean_mask_from_bands_equals_clean_mask_from_f0():
    """The cleaner works on stored masks: its result equals cleaning the raw f0 track."""
    from instrumentd.pipeline.clean_mask import clean_mask
    from instrumentd.pipeline.mask import f0_to_mask
    from instrumentd.training.prepare import mask_cleaner

    rng = torch.Generator().manual_seed(0)
    f0 = 220 * 2 ** (torch.randint(0, 24, (4, 100), generator=rng) / 12) * (1 + 0.01 * torch.rand(4, 100, generator=rng))
    f0[torch.rand(4, 100, generator=rng) < 0.3] = float("nan")
    f0[:, 40] = f0[:, 40] * 2  # octave jumps
    assert torch.equal(mask_cleaner()(f0_to_mask(f0)), clean_mask(f0))


def test_rows_run_apart_add_up(prepared, tmp_path):
    train_set, test_set = dataset.load_features(prepared, "train"), dataset.load_features(prepared, "test")
    cfg = TrainConfig(epochs=1, batch_size=8)
    first = ablation(train_set, test_set, cfg, tmp_path, None, rows=("mel",))
    assert list(first["table4"]) == ["mel"] and first["table5"] == {}
    both = ablation(train_set, test_set, cfg, tmp_path, None, rows=("cross",))
    assert list(both["table4"]) == ["mel", "cross"] and list(both["table5"]) == ["noisy"]
    assert collect(tmp_path) == both
