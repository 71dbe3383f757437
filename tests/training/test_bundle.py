"""Feature bundles: uint8 dB steps within half a step, masks exact, round trips through dataset.load, bad files named."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch

from instrumentd.training import bundle, dataset

from .conftest import TEST_FILES


def test_quantise_steps_are_80_over_255_db_and_the_error_half_a_step():
    db = torch.linspace(-80.0, 0.0, 10001)
    q = bundle.quantise(db)
    assert q.dtype == torch.uint8 and q[0] == 0 and q[-1] == 255
    assert (bundle.dequantise(q) - db).abs().max() <= 80 / 510 + 1e-5
    assert bundle.quantise(torch.tensor([-200.0, 10.0])).tolist() == [0, 255]  # out of range: clamped


def test_bundle_round_trip(prepared, tmp_path):
    out = prepared
    path, n = bundle.pack(out, tmp_path / "train.safetensors")
    full, packed = dataset.load(out), dataset.load(path)
    assert n == packed.n_clips == full.n_clips
    assert packed.names == full.names and torch.equal(packed.label, full.label)
    assert torch.equal(packed.band, full.band)  # the mask exactly
    assert (packed.mel - full.mel).abs().max() <= 80 / 510 + 1e-5  # half a 0.31 dB step
    assert torch.equal(packed.mask(), full.mask())
    size_per_clip = path.stat().st_size / n
    assert 12_800 < size_per_clip < 16_000  # 128 x 100 bytes of mel + 200 of bands + header
    with pytest.raises(dataset.FeatureError, match="a 'train' bundle, expected 'test'"):
        dataset.load(path, "test")
    test_path, n_test = bundle.pack(out, tmp_path / "test.safetensors", "test")
    test_full, test_packed = dataset.load(out, "test"), dataset.load(test_path, "test")
    assert n_test == len(TEST_FILES) and torch.equal(test_packed.clip, test_full.clip)
    assert torch.equal(test_packed.labels, test_full.labels) and torch.equal(test_packed.band, test_full.band)


def test_write_then_read_keeps_names_soundfonts_and_meta(prepared, tmp_path):
    features = dataset.load(prepared)
    path = bundle.write(features, tmp_path / "sub" / "train.safetensors")
    back = bundle.read(path)
    assert back.names == features.names and back.soundfonts == features.soundfonts
    assert back.meta == features.meta and back.meta["split"] == "train"
    assert not list(path.parent.glob("*.part"))  # written under another name, then renamed


def test_files_that_are_not_bundles_are_named(prepared, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"no header here")
    with pytest.raises(dataset.FeatureError, match="junk.safetensors: not a readable feature bundle"):
        bundle.read(junk)
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"x": torch.zeros(2)}, str(plain))
    with pytest.raises(dataset.FeatureError, match="without a feature-bundle header"):
        bundle.read(plain)
    path = bundle.write(dataset.load(prepared), tmp_path / "b.safetensors")
    tensors = safetensors.torch.load_file(str(path))
    with safetensors.safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()[bundle.METADATA_KEY])
    for change, fragment in ((dict(format=99), "bundle format 99, this version reads 1"),
                             (dict(classes=["cel"]), "bundle is for classes ['cel']"),
                             (dict(names=["one"]), "9 clips but 1 names")):
        safetensors.torch.save_file(tensors, str(tmp_path / "x.safetensors"),
                                    metadata={bundle.METADATA_KEY: json.dumps({**header, **change})})
        with pytest.raises(dataset.FeatureError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
            bundle.read(tmp_path / "x.safetensors")
