"""Table-2-style summary: one row per stage with its output shape and parameter count."""

from __future__ import annotations

import torch
from torch import nn

from .networks import count_parameters

# element-wise layers: same shape in and out, no parameters; left out of the table like Table 2 does
_SHAPE_KEEPING = (nn.LeakyReLU, nn.ReLU, nn.Dropout)


def summary_rows(model: nn.Module, batch: int = 4, n_mels: int = 128, frames: int = 100) -> list[tuple[str, tuple[int, ...], int]]:
    """``(stage name, output shape, parameters)`` for each direct child module and each layer of a
    branch, from one forward pass on ``[batch, 1, n_mels, frames]`` inputs."""
    rows: list[tuple[str, tuple[int, ...], int]] = []
    hooks = []

    def record(name: str, module: nn.Module) -> None:
        if isinstance(module, _SHAPE_KEEPING):
            return
        def hook(_m, _inp, out):
            t = out[0] if isinstance(out, tuple) else out
            rows.append((name, tuple(t.shape), count_parameters(module)))
        hooks.append(module.register_forward_hook(hook))

    for child_name, child in model.named_children():
        body = getattr(child, "body", None)
        if isinstance(body, nn.Sequential):
            for i, layer in enumerate(body):
                record(f"{child_name}.{i} {type(layer).__name__}", layer)
        elif isinstance(child, nn.Sequential):
            for i, layer in enumerate(child):
                record(f"{child_name}.{i} {type(layer).__name__}", layer)
        else:
            record(f"{child_name} {type(child).__name__}", child)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        x = torch.zeros(batch, 1, n_mels, frames)
        model(x, x)
    model.train(was_training)
    for h in hooks:
        h.remove()
    return rows
