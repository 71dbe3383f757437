"""Host-to-device copies for the streaming path: page-locked staging buffers and non-blocking copies."""

from __future__ import annotations

import numpy as np
import torch

from .errors import ParameterError

__all__ = ["PinnedUploader"]


class PinnedUploader:
    """Copies host arrays to a device through a ring of reusable page-locked (pinned) buffers.

    :meth:`upload` copies the array into the next pinned buffer, enqueues a non-blocking copy to
    the device on the current CUDA stream and returns the device tensor at once, so the host
    can prepare the next batch while the copy runs. A buffer is written again only after its
    previous copy has finished (one CUDA event per buffer), so data in flight is never
    overwritten. Buffers grow to the largest array seen and are then reused.

    On a CPU device :meth:`upload` returns a plain copy.

    Parameters
    ----------
    device : where tensors go
    n_buffers : staging buffers in the ring; 2 lets one copy run while the next is filled
    """

    def __init__(self, device: torch.device | str, n_buffers: int = 2):
        if n_buffers < 1:
            raise ParameterError(f"n_buffers must be at least 1, got {n_buffers}")
        self.device = torch.device(device)
        self._buffers: list[torch.Tensor | None] = [None] * n_buffers
        self._events: list[torch.cuda.Event | None] = [None] * n_buffers
        self._next = 0

    def upload(self, array: np.ndarray) -> torch.Tensor:
        """``array: [...]`` of numbers -> ``float32`` tensor of the same shape on :attr:`device`."""
        array = np.asarray(array, dtype=np.float32)
        if self.device.type != "cuda":
            return torch.from_numpy(array.copy())
        slot = self._next
        self._next = (slot + 1) % len(self._buffers)
        event = self._events[slot]
        if event is not None:
            event.synchronize()  # the copy that last read this buffer has finished
        buffer = self._buffers[slot]
        if buffer is None or buffer.numel() < array.size:
            buffer = torch.empty(array.size, dtype=torch.float32, pin_memory=True)
            self._buffers[slot] = buffer
        staged = buffer[: array.size].view(array.shape)
        staged.numpy()[...] = array
        out = torch.empty(array.shape, dtype=torch.float32, device=self.device)
        out.copy_(staged, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        self._events[slot] = event
        return out
