"""Training steps replayed from a CUDA graph.

A step of the paper's protocol (batch 16) on a network of 878k parameters is bound by kernel
launches and Python, not by the GPU's arithmetic: about 10 ms a step eagerly on an H100, most of
it spent launching some hundreds of small kernels for the forward pass, the backward pass and
Adam. :class:`TrainStep` captures forward, loss, backward and the optimizer's update for the full
batch shape once, after a few eager warm-up steps (cuDNN's algorithm search, autograd's lazy
set-up), and from then on each full batch is one graph replay. Batches of another size (an epoch's
last, short batch) run eagerly on the same weights and optimizer state.

Every batch is trained on exactly once, warm-up and capture included: the capture only records,
and its batch is replayed right after. Dropout draws from the CUDA generator, which graphs advance
per replay, so the random streams stay fresh.
"""

from __future__ import annotations

import torch
from torch import nn

WARMUP_STEPS = 3  # eager full-batch steps on a side stream before the capture


def autocast(device: torch.device, amp: bool):
    """bfloat16 autocast on CUDA when ``amp``; a no-op otherwise."""
    # a graph must not capture autocast's weight cache (it would replay stale casts)
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda", cache_enabled=False)


class TrainStep:
    """One optimizer step per call: ``step(mel, mask, target) -> (loss, logits)``.

    Parameters
    ----------
    model, optimizer : trained in place; on CUDA with a graph the optimizer must be capturable
        (``capturable=True``), as its step counters then live on the device
    loss_fn : ``loss_fn(logits float32 [B, C], target) -> scalar``
    amp : bfloat16 autocast of the forward pass (CUDA only)
    batch_size : the batch shape that is captured; 0 means never capture (eager steps only)

    ``mel, mask: float32 [B, 1, n_mels, frames]``; ``target``: class indices ``int64 [B]`` or
    probabilities ``float32 [B, C]``. The returned tensors are detached; with a graph they are its
    output buffers, valid until the next call (read them, or enqueue work on them, before it).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn, amp: bool, batch_size: int):
        self.model, self.optimizer, self.loss_fn, self.amp = model, optimizer, loss_fn, amp
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self._full_steps = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: tuple[torch.Tensor, ...] = ()
        self._out: tuple[torch.Tensor, torch.Tensor] = ()  # type: ignore[assignment]

    @property
    def captured(self) -> bool:
        return self._graph is not None

    def _eager(self, mel: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.amp):
            logits = self.model(mel, mask)
        loss = self.loss_fn(logits.float(), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), logits.detach()

    def _capture(self, mel: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> None:
        self._static = (mel.clone(), mask.clone(), target.clone())
        self.optimizer.zero_grad(set_to_none=True)  # the graph's backward allocates the gradients it writes
        graph = torch.cuda.CUDAGraph()
        # a capture stream of the model's GPU: torch's default one belongs to whichever GPU was current first
        with torch.cuda.graph(graph, stream=torch.cuda.Stream(self.device)):
            with autocast(self.device, self.amp):
                logits = self.model(self._static[0], self._static[1])
            loss = self.loss_fn(logits.float(), self._static[2])
            loss.backward()
            self.optimizer.step()
        self._graph, self._out = graph, (loss.detach(), logits.detach())

    def __call__(self, mel: torch.Tensor, mask: torch.Tensor,
                 target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        full = self.batch_size > 0 and self.device.type == "cuda" and mel.shape[0] == self.batch_size
        if not full:
            return self._eager(mel, mask, target)
        with torch.cuda.device(self.device):  # capture and replay on the model's GPU, not the current one
            return self._graphed(mel, mask, target)

    def _graphed(self, mel: torch.Tensor, mask: torch.Tensor,
                 target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._graph is None and self._full_steps < WARMUP_STEPS:
            self._full_steps += 1
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                out = self._eager(mel, mask, target)
            torch.cuda.current_stream(self.device).wait_stream(side)
            return out
        if self._graph is None:
            self._capture(mel, mask, target)  # records only: the batch is trained on by the replay below
        for buffer, value in zip(self._static, (mel, mask, target)):
            buffer.copy_(value)
        self._graph.replay()
        return self._out
