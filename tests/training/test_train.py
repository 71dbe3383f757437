"""Training: the stratified split, a short real run, resuming equals running straight, SoundFont policy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from instrumentd.model import Recognizer, load_checkpoint, read_metadata
from instrumentd.pipeline.errors import ParameterError
from instrumentd.training import dataset
from instrumentd.training.render import check_training_soundfonts
from instrumentd.training.train import TrainConfig, save_checkpoint, stratified_split, train

from ..conftest import devices


def test_stratified_split_keeps_class_proportions():
    labels = np.array([0] * 50 + [1] * 25 + [2] * 5)
    tr, va = stratified_split(labels, 0.2, seed=3)
    assert len(va) == 16 and len(tr) == 64 and not set(tr) & set(va)
    assert np.bincount(labels[va]).tolist() == [10, 5, 1]
    assert np.array_equal(stratified_split(labels, 0.2, seed=3)[1], va)
    with pytest.raises(ParameterError, match="at least 2 clips per class"):
        stratified_split(np.array([0, 0, 1]), 0.2, 0)


@pytest.mark.slow
@pytest.mark.parametrize("device", devices())
def test_short_run_writes_a_loadable_checkpoint(prepared, tmp_path, device):
    features = dataset.load_features(prepared, "train", device=device)
    cfg = TrainConfig(epochs=2, batch_size=4)
    result = train(features, cfg)
    assert [h.epoch for h in result.history] == [1, 2]
    assert all(np.isfinite(h.train_loss) and 0 <= h.val_accuracy <= 1 for h in result.history)
    assert len(result.split["validation"]) == 3  # one per class: 9 clips, 3 classes
    path = tmp_path / "m.safetensors"
    save_checkpoint(result, features, cfg, path, "fixture")
    meta = read_metadata(path)
    assert meta["trained"] is True and meta["training"]["data"]["clips"] == 9
    assert meta["training"]["config"]["lr"] == 1e-4 and meta["metrics"]["best_epoch"] in (1, 2)
    model, _ = load_checkpoint(path)
    x = features.mel[:2].cpu()
    with torch.no_grad():
        expected = result.model.cpu()(x, features.mask(slice(0, 2)).cpu())
        assert torch.allclose(model(x, features.mask(slice(0, 2)).cpu()), expected, atol=1e-5)
    assert Recognizer.from_checkpoint(path, "cpu").trained


@pytest.mark.slow
def test_resume_equals_a_straight_run(prepared, tmp_path):
    features = dataset.load_features(prepared, "train")
    cfg = TrainConfig(epochs=2, batch_size=4, amp=False)
    straight = train(features, cfg)
    state = tmp_path / "run.state.pt"
    train(features, dataclasses.replace(cfg, epochs=1), state)
    saved = torch.load(state, weights_only=False)
    saved["config"]["epochs"] = 2  # the interrupted run asked for 2 epochs and stopped after 1
    torch.save(saved, state)
    resumed = train(features, cfg, state, resume=True)
    assert [h.epoch for h in resumed.history] == [1, 2]
    assert resumed.history[1].train_loss == pytest.approx(straight.history[1].train_loss, rel=1e-5)
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k


def test_resume_refuses_another_run(prepared, tmp_path):
    features = dataset.load_features(prepared, "train")
    state = tmp_path / "run.state.pt"
    train(features, TrainConfig(epochs=1, batch_size=8), state)
    with pytest.raises(Exception, match="saved state is of another run"):
        train(features, TrainConfig(epochs=1, batch_size=4), state, resume=True)


def test_soundfont_policy():
    check_training_soundfonts(["fluidr3", "timgm6mb", ""])
    with pytest.raises(ParameterError, match="'musescore', which is reserved for evaluation"):
        check_training_soundfonts(["fluidr3", "musescore"])


def test_bad_protocol_values_are_named():
    with pytest.raises(ParameterError, match="unknown optimizer 'lbfgs'"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ParameterError, match="epochs must be at least 1, got 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ParameterError, match=r"mix rate must be in \[0, 1\], got 1.5"):
        TrainConfig(mix=1.5)


@pytest.mark.slow
def test_optimizer_comparison_writes_one_figure(prepared, tmp_path, capsys):
    import json

    from instrumentd.clients.cli import main

    out = tmp_path / "opt.safetensors"
    assert main(["train", str(prepared), "--out", str(out), "--optimizers", "adam,sgd", "--epochs", "2",
                 "--batch-size", "8", "--device", "cpu"]) == 0
    histories = json.loads((tmp_path / "opt.optimizers.json").read_text())
    assert list(histories) == ["adam", "sgd"] and all(len(h) == 2 for h in histories.values())
    assert (tmp_path / "opt.optimizers.png").stat().st_size > 10_000 and not out.exists()
    assert main(["train", str(prepared), "--out", str(out), "--optimizers", "adam,lbfgs"]) == 2
    assert "unknown optimizer 'lbfgs'" in capsys.readouterr().err


@pytest.mark.slow
def test_init_starts_from_a_checkpoint_and_refuses_another_variant(prepared, tmp_path):
    features = dataset.load_features(prepared, "train")
    first = train(features, TrainConfig(epochs=1, batch_size=4, amp=False))
    path = tmp_path / "first.safetensors"
    save_checkpoint(first, features, TrainConfig(epochs=1, batch_size=4, amp=False), path, "fixture")
    # a learning rate too small to move float32 weights: the fine-tuned model is the checkpoint
    tuned = train(features, TrainConfig(epochs=1, batch_size=4, amp=False, lr=1e-30, init=str(path), timbre=True,
                                          mix=0.5))
    start = load_checkpoint(path)[0].state_dict()
    assert all(torch.allclose(v.cpu(), start[k], rtol=0, atol=1e-20) for k, v in tuned.model.state_dict().items()
               if v.is_floating_point() and "running" not in k)
    with pytest.raises(ParameterError, match="'cross' checkpoint cannot start a 'mel' run"):
        train(features, TrainConfig(variant="mel", epochs=1, init=str(path)))
