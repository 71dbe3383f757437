"""Prepared features as tensors: a folder of .pt files read back with its labels, masks rebuilt from bands,
clips selected and renumbered, bad folders and files named; bundles: uint8 dB steps within half a step,
masks exact, round trips, bad bundles named."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch

from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.errors import ParameterError
from instrumentd.training import dataset

from .conftest import TEST_FILES, TRAIN_FILES


def test_a_training_folder_reads_back_one_window_a_clip_with_its_class(prepared):
    train = dataset.load_features(prepared)
    n = sum(map(len, TRAIN_FILES.values()))
    assert len(train) == train.n_clips == n and train.mel.shape == (n, 1, 128, 100)
    assert torch.equal(train.clip, torch.arange(n))
    assert sorted(CLASSES[i] for i in train.label.tolist()) == sorted(c for c, f in TRAIN_FILES.items() for _ in f)
    assert train.labels.sum(1).tolist() == [1] * n  # one-hot
    assert train.meta["split"] == "train" and train.meta["hop_length"] == 1323


def test_masks_are_rebuilt_exactly_from_the_bands(prepared):
    train = dataset.load_features(prepared)
    name = "[flu][cla]0100__1.pt"
    stored = torch.load(prepared / "flu" / name, weights_only=True)["mask"]
    i = next(k for k, s in enumerate(train.names) if s.endswith(name.replace(".pt", ".wav")))
    assert torch.equal(train.mask(slice(i, i + 1))[0], stored)
    assert train.band.min() >= -1 and train.band.max() < 128


def test_a_test_folder_keeps_each_clips_windows_and_labels(prepared):
    test = dataset.load_features(prepared, "test")
    assert test.n_clips == len(TEST_FILES) and len(test) == len(test.clip) > test.n_clips
    by_name = {name: test.labels[i] for i, name in enumerate(test.names)}
    for rel, labels in TEST_FILES.items():
        got = next(v for k, v in by_name.items() if k.endswith(rel.split("/")[-1] + ".wav"))
        assert [CLASSES[j] for j in got.nonzero().flatten().tolist()] == sorted(labels, key=CLASSES.index)


def test_selected_clips_are_renumbered(prepared):
    test = dataset.load_features(prepared, "test")
    keep = torch.tensor([False, True, False, True]).numpy()
    some = test.select_clips(keep)
    assert some.n_clips == 2 and some.names == [test.names[1], test.names[3]]
    assert sorted(set(some.clip.tolist())) == [0, 1]
    assert len(some) == int((test.clip == 1).sum() + (test.clip == 3).sum())
    assert torch.equal(some.labels, test.labels[[1, 3]])


def test_an_unknown_soundfont_is_named_with_those_there(prepared):
    train = dataset.load_features(prepared)
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
        dataset.load_features(tmp_path)
    with pytest.raises(dataset.FeatureError, match=f"no .pt files in {tmp_path}/test"):
        dataset.load_features(tmp_path, "test")


def test_a_file_missing_a_tensor_is_named(tmp_path):
    (tmp_path / "cel").mkdir()
    torch.save({"mel": torch.zeros(1, 128, 100), "meta": {}}, tmp_path / "cel" / "y.pt")
    with pytest.raises(dataset.FeatureError, match=r"y.pt: missing \['label', 'mask'\]"):
        dataset.load_features(tmp_path)


def test_broken_feature_file_is_named(tmp_path):
    (tmp_path / "cel").mkdir()
    (tmp_path / "cel" / "x.pt").write_bytes(b"not a tensor file")
    with pytest.raises(dataset.FeatureError, match="x.pt: not a readable feature file"):
        dataset.load_features(tmp_path)
    with pytest.raises(dataset.FeatureError, match="no such feature folder or bundle"):
        dataset.load_features(tmp_path / "missing.safetensors")


def test_quantise_steps_are_80_over_255_db_and_the_error_half_a_step():
    db = torch.linspace(-80.0, 0.0, 10001)
    q = dataset.quantise(db)
    assert q.dtype == torch.uint8 and q[0] == 0 and q[-1] == 255
    assert (dataset.dequantise(q) - db).abs().max() <= 80 / 510 + 1e-5
    assert dataset.quantise(torch.tensor([-200.0, 10.0])).tolist() == [0, 255]  # out of range: clamped


def test_bundle_round_trip(prepared, tmp_path):
    out = prepared
    path, n = dataset.pack(out, tmp_path / "train.safetensors")
    full, packed = dataset.load_features(out), dataset.load_features(path)
    assert n == packed.n_clips == full.n_clips
    assert packed.names == full.names and torch.equal(packed.label, full.label)
    assert torch.equal(packed.band, full.band)  # the mask exactly
    assert (packed.mel - full.mel).abs().max() <= 80 / 510 + 1e-5  # half a 0.31 dB step
    assert torch.equal(packed.mask(), full.mask())
    size_per_clip = path.stat().st_size / n
    assert 12_800 < size_per_clip < 16_000  # 128 x 100 bytes of mel + 200 of bands + header
    with pytest.raises(dataset.FeatureError, match="a 'train' bundle, expected 'test'"):
        dataset.load_features(path, "test")
    test_path, n_test = dataset.pack(out, tmp_path / "test.safetensors", "test")
    test_full, test_packed = dataset.load_features(out, "test"), dataset.load_features(test_path, "test")
    assert n_test == len(TEST_FILES) and torch.equal(test_packed.clip, test_full.clip)
    assert torch.equal(test_packed.labels, test_full.labels) and torch.equal(test_packed.band, test_full.band)


def test_write_then_read_keeps_names_soundfonts_and_meta(prepared, tmp_path):
    features = dataset.load_features(prepared)
    path = dataset.write(features, tmp_path / "sub" / "train.safetensors")
    back = dataset.read(path)
    assert back.names == features.names and back.soundfonts == features.soundfonts
    assert back.meta == features.meta and back.meta["split"] == "train"
    assert not list(path.parent.glob("*.part"))  # written under another name, then renamed


def test_files_that_are_not_bundles_are_named(prepared, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"no header here")
    with pytest.raises(dataset.FeatureError, match="junk.safetensors: not a readable feature bundle"):
        dataset.read(junk)
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"x": torch.zeros(2)}, str(plain))
    with pytest.raises(dataset.FeatureError, match="without a feature-bundle header"):
        dataset.read(plain)
    path = dataset.write(dataset.load_features(prepared), tmp_path / "b.safetensors")
    tensors = safetensors.torch.load_file(str(path))
    with safetensors.safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()[dataset.METADATA_KEY])
    for change, fragment in ((dict(format=99), "bundle format 99, this version reads 1"),
                             (dict(classes=["cel"]), "bundle is for classes ['cel']"),
                             (dict(names=["one"]), "9 clips but 1 names")):
        safetensors.torch.save_file(tensors, str(tmp_path / "x.safetensors"),
                                    metadata={dataset.METADATA_KEY: json.dumps({**header, **change})})
        with pytest.raises(dataset.FeatureError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
            dataset.read(tmp_path / "x.safetensors")
