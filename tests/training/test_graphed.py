"""Training steps replayed from a CUDA graph train exactly as eager steps do."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from instrumentd.model.classes import CLASSES
from instrumentd.model.networks import build
from instrumentd.training.graphed import WARMUP_STEPS, TrainStep

LR = 1e-3


def _batches(sizes: list[int], device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(5)
    out = []
    for n in sizes:
        mel = torch.rand(n, 1, 128, 100, generator=g) * -80
        mask = (torch.rand(n, 1, 128, 100, generator=g) > 0.97).float()
        target = torch.randint(0, len(CLASSES), (n,), generator=g)
        out.append((mel.to(device), mask.to(device), target.to(device)))
    return out


def _run(model: nn.Module, batches, graph: bool) -> tuple[TrainStep, list[float]]:
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=True, capturable=graph)
    step = TrainStep(model, optimizer, nn.CrossEntropyLoss(), amp=False, batch_size=16 if graph else 0)
    losses = [float(step(*b)[0]) for b in batches]
    return step, losses


@pytest.mark.gpu
def test_graph_replays_train_like_eager_steps(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    device = torch.device("cuda")
    torch.manual_seed(0)
    eager = build("cross", len(CLASSES)).to(device).train()
    for m in eager.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0  # the comparison needs the same arithmetic, not the same random draws
    graphed = copy.deepcopy(eager)
    start = {k: v.clone() for k, v in eager.state_dict().items()}
    # warm-up, capture, replays, a short batch eagerly between replays, then replays again
    sizes = [16] * (WARMUP_STEPS + 3) + [5] + [16] * 2
    batches = _batches(sizes, device)
    _, eager_losses = _run(eager, batches, graph=False)
    step, graph_losses = _run(graphed, batches, graph=True)
    assert step.captured
    assert graph_losses == pytest.approx(eager_losses, rel=1e-4)
    for (name, e), g in zip(eager.state_dict().items(), graphed.state_dict().values()):
        moved = (e.float() - start[name].float()).abs().max()
        assert name.endswith("num_batches_tracked") or moved > 0, name
        assert torch.allclose(g.float(), e.float(), atol=LR * 1e-2, rtol=0), name
    assert int(graphed.state_dict()[next(k for k in start if k.endswith("num_batches_tracked"))]) == len(sizes)


@pytest.mark.gpu
def test_train_on_cuda_with_graphs_equals_eager_train(prepared, monkeypatch):
    from instrumentd.training import dataset
    from instrumentd.training import train as T

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    real_build = T.build

    def build_without_dropout(variant, n_classes):
        model = real_build(variant, n_classes)
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        return model

    monkeypatch.setattr(T, "build", build_without_dropout)
    features = dataset.load_features(prepared, "train", device="cuda")
    # 6 training clips in batches of 2: 3 warm-up steps, then the capture and 5 replays
    cfg = T.TrainConfig(epochs=3, batch_size=2, amp=False, mask_noise=0.0, lr=LR)
    graphed = T.train(features, cfg)
    eager = T.train(features, cfg, cuda_graph=False)
    assert [h.train_loss for h in graphed.history] == pytest.approx([h.train_loss for h in eager.history], rel=1e-4)
    assert graphed.best_epoch == eager.best_epoch
    for g, e in zip(graphed.model.state_dict().values(), eager.model.state_dict().values()):
        assert torch.allclose(g.float(), e.float(), atol=LR * 1e-2, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_graph_on_the_second_gpu_while_the_first_is_current():
    # a run on cuda:1 from a process whose current device is cuda:0 (two trainings on one machine)
    torch.cuda.set_device(0)
    device = torch.device("cuda:1")
    torch.manual_seed(0)
    model = build("cross", len(CLASSES)).to(device).train()
    step, losses = _run(model, _batches([16] * (WARMUP_STEPS + 3), device), graph=True)
    assert step.captured and all(math.isfinite(x) for x in losses)
    assert torch.cuda.current_device() == 0
