"""Weight-space interpolation: the ends give back their checkpoints, the middle is the mean, different
networks are refused."""

from __future__ import annotations

import pytest
import torch

from instrumentd.model import checkpoint
from instrumentd.model.checkpoint import CheckpointError
from instrumentd.model.networks import build
from instrumentd.pipeline.config import DEFAULT
from instrumentd.pipeline.errors import ParameterError
from instrumentd.training.interpolate import interpolate_checkpoints


def two_networks(tmp_path, variant_b: str = "cross"):
    torch.manual_seed(1)
    a = tmp_path / "start.safetensors"
    checkpoint.save(a, build("cross"), "cross", DEFAULT, decision={"min_confidence": 0.3})
    torch.manual_seed(2)
    b = tmp_path / "tuned.safetensors"
    checkpoint.save(b, build(variant_b), variant_b, DEFAULT, training={"config": {"seed": 7}},
                    decision={"min_confidence": 0.4})
    return a, b


def weights(path) -> dict[str, torch.Tensor]:
    return checkpoint.load_checkpoint(path)[0].state_dict()


def test_alpha_0_and_1_give_back_each_end_and_the_middle_is_their_mean(tmp_path):
    a, b = two_networks(tmp_path)
    wa, wb = weights(a), weights(b)
    start, _ = interpolate_checkpoints(a, b, 0.0)
    tuned, _ = interpolate_checkpoints(a, b, 1.0)
    middle, meta = interpolate_checkpoints(a, b, 0.5)
    for k, v in start.state_dict().items():
        assert torch.equal(v, wa[k]) or not v.is_floating_point(), k
        assert torch.equal(tuned.state_dict()[k], wb[k]), k
        if v.is_floating_point():
            torch.testing.assert_close(middle.state_dict()[k], (wa[k] + wb[k]) / 2, rtol=0, atol=1e-6)
    ids = checkpoint.checkpoint_id(checkpoint.read_metadata(a)), checkpoint.checkpoint_id(checkpoint.read_metadata(b))
    assert meta["interpolation"] == {"start": ids[0], "tuned": ids[1], "alpha": 0.5}
    assert meta["training"] == {"config": {"seed": 7}}  # the tuned end's training record is kept
    assert "decision" not in meta  # thresholds chosen for other weights are not carried over


def test_different_networks_and_bad_shares_are_refused(tmp_path):
    a, b = two_networks(tmp_path, variant_b="mel")
    with pytest.raises(CheckpointError, match="different networks: variant 'cross' against 'mel'"):
        interpolate_checkpoints(a, b, 0.5)
    with pytest.raises(ParameterError, match=r"alpha must be in \[0, 1\].*1.5"):
        interpolate_checkpoints(a, a, 1.5)
