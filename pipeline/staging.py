"""Host memory where a push's audio is laid out, stream after stream, for one upload to the device.

Audio read from a stream's ring is copied here at once, while it is still in the CPU's cache; the
whole push then goes to the device in one copy. Joining every stream's chunk only at upload time (one
``np.concatenate`` over a thousand chunks of 1 s) read 176 MB back from memory, and each chunk, larger
than the allocator's mmap threshold, was new memory whose pages the kernel had to fault in: on a
2-core x86_64 CPU, reading 1,000 streams' second and joining it took 95-120 ms that way against 52 ms
copied here as read.

The memory lives as long as its :class:`Staging`. For a GPU it is page-locked, so the upload runs
without a bounce buffer; since that upload is asynchronous, the next write first waits for it to
finish. A GPU's buffer is allocated once at :data:`PINNED_SAMPLES` and does not grow with the pushes: a
push that would not fit is cut (:meth:`Staging.fits`). It had grown by doubling to the largest push,
allocating page-locked memory between steps whenever a push was larger than any before (a daemon's
first windows, an overload, a 1,000-stream stop: up to 256 MiB, about 170 ms on an H100 host). On a CPU
the buffer grows (doubling) to the largest push.

The small arrays of numbers that go with a push (which stream, where its audio starts, which frames are
new) go up with :func:`upload`, also asynchronously: a plain copy to a GPU waits for every kernel queued
before it, so each such copy made the host wait for the device's work until then.
"""

from __future__ import annotations

import numpy as np
import torch

INITIAL_SAMPLES = 1 << 16  # float32 samples first allocated on a CPU (256 kB); doubled as pushes need
PINNED_SAMPLES = 1 << 23  # float32 samples of a GPU's page-locked buffer (32 MiB, 190 s of 44.1 kHz audio)


def upload(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device`` without waiting for the work already queued there: to a GPU
    through page-locked memory and asynchronously (torch's page-locked allocator keeps the block until
    the copy is done), on the CPU the array's own memory (do not change it while the tensor is in use)."""
    host = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


class Staging:
    """A ``float32`` host buffer filled by :meth:`append` and sent by :meth:`upload`.

    Parameters
    ----------
    device : where :meth:`upload` sends the audio; for a CUDA device the buffer is page-locked
    capacity : samples of a fixed buffer, allocated at once (default: :data:`PINNED_SAMPLES` for a CUDA
        device; none on a CPU, whose buffer grows)
    """

    def __init__(self, device: torch.device, capacity: int | None = None):
        self.device = device
        self.pinned = device.type == "cuda"
        # samples that fit without a new allocation (None: the buffer grows as pushes need)
        self.capacity = capacity if capacity is not None else PINNED_SAMPLES if self.pinned else None
        self._buf = self._alloc(self.capacity or INITIAL_SAMPLES)
        self._host = self._buf.numpy()  # the same memory, written through numpy (no tensor call per append)
        self._address = self._host.__array_interface__["data"][0]
        self.used = 0  # samples appended since the last upload
        self._in_flight: torch.cuda.Event | None = None  # the last upload, until the host may write again

    def _alloc(self, samples: int) -> torch.Tensor:
        return torch.empty(samples, dtype=torch.float32, pin_memory=self.pinned)

    def fits(self, samples: int) -> bool:
        """True when ``samples`` more may be appended: always for a buffer that grows (a CPU's); for a fixed
        one (a GPU's), when they fit or nothing is staged (a chunk longer than the whole buffer is the one
        case that grows it)."""
        return self.capacity is None or self.used == 0 or self.used + samples <= self.capacity

    def room(self, gap: int, samples: int) -> np.ndarray:
        """``float32 [samples]`` of this buffer, ``gap`` samples after what is staged, to be written in place
        (a ring's read): :meth:`append` of what was written there then copies nothing, provided the
        ``gap`` samples are appended first. A view, valid until the next :meth:`room` or :meth:`upload`."""
        self._writable()
        self._ensure(self.used + gap + samples)
        return self._host[self.used + gap : self.used + gap + samples]

    def in_the_way(self, audio: np.ndarray, samples: int) -> bool:
        """True when appending ``samples`` would write over ``audio``: audio read into :meth:`room` after a
        shorter gap than is now appended before it (a stream reset between the read and its staging)."""
        start = (audio.__array_interface__["data"][0] - self._address) // 4
        return len(audio) > 0 and self.used <= start < min(self.used + samples, len(self._host))

    def append(self, audio: np.ndarray) -> int:
        """Copy ``audio: float32 [n]`` after what is staged (nothing to copy when it was written there, in
        :meth:`room`); returns the offset of its first sample."""
        self._writable()
        at, n = self.used, len(audio)
        self._ensure(at + n)
        if not (n and audio.__array_interface__["data"][0] == self._address + 4 * at
                and audio.dtype == np.float32 and audio.strides == (4,)):
            self._host[at : at + n] = audio
        self.used = at + n
        return at

    def _writable(self) -> None:
        """Wait for the last upload, which reads this memory, before it is written again."""
        if self._in_flight is not None:
            self._in_flight.synchronize()
            self._in_flight = None

    def _ensure(self, samples: int) -> None:
        """Grow the buffer (what is staged kept) to hold ``samples``."""
        if samples > len(self._host):
            grown = self._alloc(max(2 * len(self._host), samples))
            grown[: self.used] = self._buf[: self.used]
            self._buf, self._host = grown, grown.numpy()
            self._address = self._host.__array_interface__["data"][0]

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
