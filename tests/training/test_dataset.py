"""Prepared features as tensors: a folder of .pt files read back with its labels, masks rebuilt from bands,
clips selected and renumbered, bad folders and files named."""

from __future__ import annotations

import pytest
import torch

from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.errors import ParameterError
from instrumentd.training import dataset

from .conftest import TEST_FILES, TRAIN_FILES


def test_a_training_folder_reads_back_one_window_a_clip_with_its_class(prepared):
    train = dataset.load(prepared)
    n = sum(map(len, TRAIN_FILES.values()))
    assert len(train) == train.n_clips == n and train.mel.shape == (n, 1, 128, 100)
    assert torch.equal(train.clip, torch.arange(n))
    assert sorted(CLASSES[i] for i in train.label.tolist()) == sorted(c for c, f in TRAIN_FILES.items() for _ in f)
    assert train.labels.sum(1).tolist() == [1] * n  # one-hot
    assert train.meta["split"] == "train" and train.meta["hop_length"] == 1323


def test_masks_are_rebuilt_exactly_from_the_bands(prepared):
    train = dataset.load(prepared)
    name = "[flu][cla]0100__1.pt"
    stored = torch.load(prepared / "flu" / name, weights_only=True)["mask"]
    i = next(k for k, s in enumerate(train.names) if s.endswith(name.replace(".pt", ".wav")))
    assert torch.equal(train.mask(slice(i, i + 1))[0], stored)
    assert train.band.min() >= -1 and train.band.max() < 128


def test_a_test_folder_keeps_each_clips_windows_and_labels(prepared):
    test = dataset.load(prepared, "test")
    assert test.n_clips == len(TEST_FILES) and len(test) == len(test.clip) > test.n_clips
    by_name = {name: test.labels[i] for i, name in enumerate(test.names)}
    for rel, labels in TEST_FILES.items():
        got = next(v for k, v in by_name.items() if k.endswith(rel.split("/")[-1] + ".wav"))
        assert [CLASSES[j] for j in got.nonzero().flatten().tolist()] == sorted(labels, key=CLASSES.index)


def test_selected_clips_are_renumbered(prepared):
    test = dataset.load(prepared, "test")
    keep = torch.tensor([False, True, False, True]).numpy()
    some = test.select_clips(keep)
    assert some.n_clips == 2 and some.names == [test.names[1], test.names[3]]
    assert sorted(set(some.clip.tolist())) == [0, 1]
    assert len(some) == int((test.clip == 1).sum() + (test.clip == 3).sum())
    assert torch.equal(some.labels, test.labels[[1, 3]])


def test_an_unknown_soundfont_is_named_with_those_there(prepared):
    train = dataset.load(prepared)
    assert train.with_soundfonts(None) is train
    with pytest.raises(ParameterError, match=r"'fluidr3'.*they hold \[''\]"):
        train.with_soundfonts(("fluidr3",))


def test_a_mask_with_two_bands_in_a_frame_cannot_be_stored():
    mask = torch.zeros(128, 4)
    mask[3, 0] = mask[7, 1] = mask[9, 1] = 1
    with pytest.raises(dataset.FeatureError, match="x.pt: mask has more than one active band"):
        dataset.mask_to_band(mask, "x.pt")
    mask[9, 1] = 0
    assert dataset.mask_to_band(mask).tolist() == [3, 7, -1, -1]


def test_an_empty_folder_says_to_run_prepare(tmp_path):
    with pytest.raises(dataset.FeatureError, match="no .pt files .* run 'instrumentd prepare' first"):
        dataset.load(tmp_path)
    with pytest.raises(dataset.FeatureError, match=f"no .pt files in {tmp_path}/test"):
        dataset.load(tmp_path, "test")


def test_a_file_missing_a_tensor_is_named(tmp_path):
    (tmp_path / "cel").mkdir()
    torch.save({"mel": torch.zeros(1, 128, 100), "meta": {}}, tmp_path / "cel" / "y.pt")
    with pytest.raises(dataset.FeatureError, match=r"y.pt: missing \['label', 'mask'\]"):
        dataset.load(tmp_path)


def test_broken_feature_file_is_named(tmp_path):
    (tmp_path / "cel").mkdir()
    (tmp_path / "cel" / "x.pt").write_bytes(b"not a tensor file")
    with pytest.raises(dataset.FeatureError, match="x.pt: not a readable feature file"):
        dataset.load(tmp_path)
    with pytest.raises(dataset.FeatureError, match="no such feature folder or bundle"):
        dataset.load(tmp_path / "missing.safetensors")
