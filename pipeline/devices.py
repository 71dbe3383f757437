"""Device guards: CUDA work launched for a tensor runs on that tensor's GPU, whichever is current.

Torch's own operators switch to their tensors' device; Triton kernels, CUDA graph capture and the
streams made for them use the *current* device. With one worker per GPU (``--device cuda:0,cuda:1``)
the current device of the thread that builds or steps a worker is not always its own, so every such
launch, capture and build goes under :func:`guard`.
"""

from __future__ import annotations

import contextlib

import torch


def guard(device: torch.device | str) -> contextlib.AbstractContextManager:
    """``with guard(device):`` makes a CUDA ``device`` current for the block (a CPU device: no-op).

    An index-less ``cuda`` means the device current when the block is entered.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.cuda.device(device)
