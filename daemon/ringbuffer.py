"""Fixed-capacity audio ring buffer between one source (writer thread) and the worker (reader).

The writer never allocates: samples are copied into a preallocated array under a lock held only
for the copy. A live writer that outruns the reader overwrites the oldest unread samples and the
loss is counted; a non-live writer (``file+fast:``, ``stdin:``) waits for room instead, so a
file is read as fast as the worker consumes it and nothing is dropped.

A :class:`SharedRing` keeps its samples, the writer's position and its arrival receipts in memory
shared with another process that writes them (the file player, daemon/file_player.py); the reader's
position goes the other way, so that the writer never writes over unread samples.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable

import numpy as np

RECEIPTS = 256  # (sample index, arrival time) pairs kept to answer "when did sample i arrive"


class RingBuffer:
    """Mono ``float32`` samples at the source's own rate.

    Parameters
    ----------
    capacity : samples held (seconds * rate)
    rate : hz of the samples written
    blocking : True = a full buffer makes the writer wait; False = the oldest unread samples are dropped
    memory : ``(samples float32 [capacity], receipts float64 [RECEIPTS, 2])`` to hold them (default: new arrays)
    """

    def __init__(self, capacity: int, rate: int, blocking: bool = False,
                 memory: tuple[np.ndarray, np.ndarray] | None = None):
        if capacity <= 0:
            raise ValueError(f"capacity must be positive samples, got {capacity}")
        self.capacity = capacity
        self.rate = rate
        self.blocking = blocking
        if memory is None:
            memory = np.zeros(capacity, dtype=np.float32), np.zeros((RECEIPTS, 2), dtype=np.float64)
        self._buf, self._receipts = memory
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._written = 0  # samples ever written (absolute index of the next sample): see written
        self.read_pos = 0  # absolute index of the next sample to read
        self.dropped = 0  # samples overwritten before they were read
        self.breaks = 0  # discontinuities marked by the source (restarts)
        self._break_at: list[list[int]] = []  # [sample index, samples of wall-clock time missing there]
        self._timing_break = False  # the next write measures the gap of the break just marked
        self._resumed: float | None = None  # time.monotonic() when the audio after that break began, if known
        self.last_gap = 0  # samples of time missing before the chunk the last read returned
        self.closed = False
        self.on_close: Callable[[], None] | None = None  # called by close(), in the closing thread
        self._n_receipts = 0
        self._read_cell: np.ndarray | None = None  # int64 [1]: read_pos, published for a writer elsewhere

    @property
    def written(self) -> int:
        """Samples ever written: the absolute index of the next sample."""
        return self._written

    def _refresh(self) -> None:
        """Take in a writer's receipts from elsewhere (:class:`SharedRing`); lock held."""

    def write(self, samples: np.ndarray, arrival: float | None = None) -> None:
        """Copy ``samples: float32 [n]`` in; ``arrival`` = time.monotonic() of the last one (default now)."""
        n = len(samples)
        if n == 0:
            return
        with self._lock:
            if self._timing_break:
                self._timing_break = False
                if self._n_receipts and self._break_at and self._break_at[-1][0] == self.written:
                    now = time.monotonic() if arrival is None else arrival
                    began = now - n / self.rate if self._resumed is None else self._resumed
                    last = self._receipts[(self._n_receipts - 1) % RECEIPTS, 1]
                    self._break_at[-1][1] = max(0, int(round((began - last) * self.rate)))
            if self.blocking:
                offset = 0
                while offset < n and not self.closed:
                    while self.written - self.read_pos >= self.capacity and not self.closed:
                        self._room.wait(0.1)
                    take = min(n - offset, self.capacity - (self.written - self.read_pos))
                    self._copy_in(samples[offset : offset + take])
                    offset += take
            else:
                if n > self.capacity:
                    samples = samples[n - self.capacity :]
                    self._written += n - self.capacity
                    n = self.capacity
                self._copy_in(samples)
                behind = self.written - self.read_pos - self.capacity
                if behind > 0:
                    self.dropped += behind
                    self.read_pos += behind
            self._receipt(arrival)

    def _receipt(self, arrival: float | None) -> None:
        """Remember that samples up to :attr:`written` arrived at ``arrival`` (default now); lock held."""
        r = self._n_receipts % RECEIPTS
        self._receipts[r, 0] = self.written
        self._receipts[r, 1] = time.monotonic() if arrival is None else arrival
        self._n_receipts += 1

    def _copy_in(self, samples: np.ndarray) -> None:
        n = len(samples)
        start = self.written % self.capacity
        first = min(n, self.capacity - start)
        self._buf[start : start + first] = samples[:first]
        if first < n:
            self._buf[: n - first] = samples[first:]
        self._written += n

    def mark_break(self, resumed: float | None = None) -> None:
        """The source restarted: audio after this point does not continue what came before.

        The next write measures the outage, the break's gap (:attr:`last_gap` of the read that reaches
        it), so that the stream clock can jump by the time the source was away: from the last write to
        ``resumed`` (time.monotonic() when the new audio began, if the source knows it), else to the
        start of the next write's block (its arrival less its duration).
        """
        with self._lock:
            self.breaks += 1
            self._break_at.append([self.written, 0])
            self._resumed = resumed
            self._timing_break = True

    def go_live(self) -> None:
        """From now on a full ring drops its oldest unread samples (counted) instead of making the writer
        wait; wakes a waiting writer."""
        with self._lock:
            self.blocking = False
            self._room.notify_all()

    def close(self) -> None:
        """No more samples will come (end of file, stdin closed); wakes a waiting writer."""
        with self._lock:
            self.closed = True
            self._room.notify_all()
        if self.on_close is not None:
            self.on_close()

    def available(self) -> int:
        with self._lock:
            self._refresh()
            return self.written - self.read_pos

    def room(self) -> int:
        """Samples a write can take now without waiting (a blocking ring) or dropping (a live one)."""
        with self._lock:
            self._refresh()
            # a closed ring takes (and discards) anything
            return self.capacity if self.closed else self.capacity - (self.written - self.read_pos)

    def read(self, max_samples: int | None = None, keep_last: int | None = None,
             out: np.ndarray | None = None) -> tuple[np.ndarray, int, bool]:
        """Take unread samples.

        Parameters
        ----------
        max_samples : take at most this many (default: all)
        keep_last : if more than this many are unread, skip the older ones (counted as dropped)
        out : float32 [m] to copy them into (at most ``m`` are taken) instead of a new array

        Returns
        -------
        samples : float32 [n], a copy (a view of ``out``, when given)
        start : absolute index of ``samples[0]``
        broken : True if samples were skipped or a break was marked since the previous read

        :attr:`last_gap` is then the samples of wall-clock time the source was away before ``samples[0]``
        (0 without a break).
        """
        with self._lock:
            self._refresh()
            skipped = False
            if keep_last is not None and self.written - self.read_pos > keep_last:
                skip = self.written - self.read_pos - keep_last
                self.dropped += skip
                self.read_pos += skip
                skipped = True
            start = self.read_pos
            n = self.written - start
            if max_samples is not None:
                n = min(n, max_samples)
            if out is not None:
                n = min(n, len(out))
            broken = skipped
            self.last_gap = 0
            # a chunk never spans a break: it ends at the break, the next read with audio after it reports it
            while self._break_at and self._break_at[0][0] <= start < self.written:
                self.last_gap += self._break_at.pop(0)[1]
                broken = True
            if self._break_at and self._break_at[0][0] < start + n:
                n = self._break_at[0][0] - start
            out = np.empty(n, dtype=np.float32) if out is None else out[:n]
            a = start % self.capacity
            first = min(n, self.capacity - a)
            out[:first] = self._buf[a : a + first]
            out[first:] = self._buf[: n - first]
            self.read_pos = start + n
            if self._read_cell is not None:
                self._read_cell[0] = self.read_pos
            self._room.notify_all()
            return out, start, broken

    def arrival(self, index: int) -> float:
        """time.monotonic() at which sample ``index`` was written (the write that contained it); the oldest
        write remembered for an older sample, the newest for one not written yet.

        The remembered writes' ends increase, so the write is found by bisection: a window asks this
        once, and a source that writes every 20 ms has 50 writes in the last second.
        """
        with self._lock:
            self._refresh()
            n = min(self._n_receipts, RECEIPTS)
            if n == 0:
                return time.monotonic()
            receipts, first = self._receipts, self._n_receipts - n
            # the first remembered write whose end lies past ``index``: the one that held it
            k = bisect.bisect_right(range(first, self._n_receipts), index,
                                    key=lambda j: receipts[j % RECEIPTS, 0])
            return float(receipts[(first + min(k, n - 1)) % RECEIPTS, 1])


# A shared ring's memory: SHARED_HEADER bytes, then float32 [capacity] samples. The header holds int64 [0] the reader's
# position, [1] the writer's (samples ever written), [2] the receipts ever written, and from byte 64 the receipts,
# float64 [RECEIPTS, 2] (sample index after a write, its time.monotonic()), as RingBuffer keeps them.
SHARED_HEADER = 8192
READ_POS, WRITTEN, N_RECEIPTS = 0, 1, 2


def shared_views(mem, capacity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(samples float32 [capacity], positions int64 [3], receipts float64 [RECEIPTS, 2])`` over a shared
    ring's memory ``mem`` (a buffer of ``SHARED_HEADER + 4 * capacity`` bytes)."""
    return (np.frombuffer(mem, np.float32, capacity, SHARED_HEADER), np.frombuffer(mem, np.int64, 3, 0),
            np.frombuffer(mem, np.float64, 2 * RECEIPTS, 64).reshape(RECEIPTS, 2))


class SharedRing(RingBuffer):
    """A live ring whose samples another process writes into shared memory (:func:`shared_views`).

    The writer copies samples in, then its receipt, then moves its position; the reader takes the
    position in before each look at the ring, copies the samples out, then publishes its own position.
    This relies on the processor keeping each core's stores in order as others see them and not
    reordering loads, as x86-64 does (daemon/file_player.py runs only there). The writer keeps clear
    of unread samples, so nothing is dropped on this side except by :meth:`read`'s ``keep_last``.
    """

    def __init__(self, mem, capacity: int, rate: int):
        samples, self._positions, receipts = shared_views(mem, capacity)
        super().__init__(capacity, rate, blocking=False, memory=(samples, receipts))
        self._read_cell = self._positions[READ_POS : READ_POS + 1]

    @property
    def written(self) -> int:
        """Samples the writer has written, as it last said in the shared memory."""
        return int(self._positions[WRITTEN])

    def _refresh(self) -> None:
        self._n_receipts = int(self._positions[N_RECEIPTS])

    def write(self, samples: np.ndarray, arrival: float | None = None) -> None:
        raise TypeError("a shared ring is written by the process that shares it")
