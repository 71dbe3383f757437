import json
import struct

import numpy as np
import pytest
import torch

from instrumentd.model import checkpoint
from instrumentd.model.checkpoint import CheckpointError
from instrumentd.model.networks import build
from instrumentd.model.recognizer import DEFAULT_CHECKPOINT, Recognizer
from instrumentd.pipeline.config import DEFAULT, TEN_MS
from instrumentd.pipeline.features import Features


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(1)
    model = build("cross").eval()
    path = tmp_path / "m.safetensors"
    checkpoint.save(path, model, "cross", DEFAULT, training={"data": "test"}, metrics={"micro_f1": 0.5})
    return path, model


def test_round_trip_gives_same_outputs(saved):
    path, model = saved
    loaded, meta = checkpoint.load_checkpoint(path)
    assert not loaded.training
    assert meta["variant"] == "cross" and meta["metrics"] == {"micro_f1": 0.5}
    x = torch.randn(2, 1, 128, 100)
    assert torch.equal(model(x, x), loaded(x, x))


def test_file_is_not_a_pickle(saved):
    head = saved[0].read_bytes()[:16]
    assert not head.startswith(b"\x80") and not head.startswith(b"PK")  # pickle / torch zip


def test_tampered_weight_is_refused(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="digest"):
        checkpoint.load_checkpoint(path)


def _rewrite_metadata(path, change):
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["instrumentd"])
    change(meta)
    header["__metadata__"]["instrumentd"] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda m: m.update(classes=["a", "b"]), "classes"),
        (lambda m: m.update(variant="mel"), "do not fit variant"),
        (lambda m: m.update(variant="resnet"), "unknown model variant"),
        (lambda m: m.update(format=99), "format"),
        (lambda m: m["features"].update(hop_length=-3), "feature config"),
    ],
)
def test_mismatched_metadata_is_refused(saved, change, message):
    path, _ = saved
    _rewrite_metadata(path, change)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load_checkpoint(path)


def test_other_feature_config_refused_when_expected(saved):
    with pytest.raises(CheckpointError, match="features"):
        checkpoint.load_checkpoint(saved[0], expect_features=TEN_MS)


@pytest.mark.parametrize("content", [b"", b"garbage" * 50, b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_corrupt_files(tmp_path, content):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        checkpoint.load_checkpoint(p)


def test_truncated_file(saved):
    path, _ = saved
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CheckpointError):
        checkpoint.load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "none.safetensors")


def test_default_checkpoint_loads_and_predicts():
    rec = Recognizer.from_checkpoint(DEFAULT_CHECKPOINT, "cpu")
    x = torch.randn(5, 1, 128, 100)
    probs = rec.predict(Features(x, (x > 1).float(), x))
    assert probs.shape == (5, 11)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
