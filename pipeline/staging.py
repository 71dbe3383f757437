"""Host memory where a push's audio is laid out, stream after stream, for one upload to the device.

Audio read from a stream's ring is copied here at once, while it is still in the CPU's cache; the
whole push then goes to the device in one copy. Joining every stream's chunk only at upload time (one
``np.concatenate`` over a thousand chunks of 1 s) read 176 MB back from memory, and each chunk, larger
than the allocator's mmap threshold, was new memory whose pages the kernel had to fault in: on a
2-core x86_64 CPU, reading 1,000 streams' second and joining it took 95-120 ms that way against 52 ms
copied here as read.

The memory lives as long as its :class:`Staging` and grows (doubling) to the largest push. For a GPU
it is page-locked, so the upload runs without a bounce buffer; since that upload is asynchronous, the
next write first waits for it to finish.
"""

from __future__ import annotations

import numpy as np
import torch

INITIAL_SAMPLES = 1 << 16  # float32 samples first allocated (256 kB); doubled as pushes need


class Staging:
    """A growable ``float32`` host buffer filled by :meth:`append` and sent by :meth:`upload`.

    Parameters
    ----------
    device : where :meth:`upload` sends the audio; for a CUDA device the buffer is page-locked
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.pinned = device.type == "cuda"
        self._buf = self._alloc(INITIAL_SAMPLES)
        self._host = self._buf.numpy()  # the same memory, written through numpy (no tensor call per append)
        self.used = 0  # samples appended since the last upload
        self._in_flight: torch.cuda.Event | None = None  # the last upload, until the host may write again

    def _alloc(self, samples: int) -> torch.Tensor:
        return torch.empty(samples, dtype=torch.float32, pin_memory=self.pinned)

    def append(self, audio: np.ndarray) -> int:
        """Copy ``audio: float32 [n]`` after what is staged; returns the offset of its first sample."""
        if self._in_flight is not None:
            self._in_flight.synchronize()
            self._in_flight = None
        at, n = self.used, len(audio)
        if at + n > len(self._host):
            grown = self._alloc(max(2 * len(self._host), at + n))
            grown[:at] = self._buf[:at]
            self._buf, self._host = grown, grown.numpy()
        self._host[at : at + n] = audio
        self.used = at + n
        return at

    def upload(self) -> torch.Tensor:
        """Everything staged, ``float32 [used]`` on the device, in one copy; the buffer is empty again.

        On the CPU the result is a view of the buffer: use it before the next :meth:`append`.
        """
        flat = self._buf[: self.used].to(self.device, non_blocking=True)
        if self.pinned:
            self._in_flight = torch.cuda.Event()
            self._in_flight.record(torch.cuda.current_stream(self.device))
        self.used = 0
        return flat
