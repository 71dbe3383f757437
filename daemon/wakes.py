"""When each stream of a worker is next worth a look, in one array per kind of wait.

A live stream cannot have its next window complete, or a hop of audio to take along, before a time
the worker works out from its rate (``next_check``, ``along_at``: ``time.monotonic()`` seconds, 0 =
look now). A step used to ask every open stream whether its time had come, a few attribute reads each:
with every stream waiting, 0.22 ms a step at 1,000 streams and 5.8-6.8 ms at 10,000 on a 2-core CPU
(``instrumentd bench scan``), at every one of the tens of steps a second. Here the times sit in arrays
indexed by the stream's features slot, and :meth:`Wakes.ready` finds the streams whose time has come
with one comparison over them (a step of waiting streams: 0.007 and 0.011 ms). A stream whose source
closes is woken (:meth:`Wakes.wake`, from the closing thread) so that its end is seen at the next step.
"""

from __future__ import annotations

import collections
import math
from typing import Any

import numpy as np


class Wakes:
    """``next_check`` and ``along_at`` of a worker's streams, by features slot (``inf`` where none)."""

    def __init__(self):
        self.next_check = np.zeros(0)
        self.along_at = np.zeros(0)
        self._streams: list[Any] = []  # the stream in each slot, None where none
        # slots woken by another thread, applied by the next ready() (put() may be replacing the arrays)
        self._woken: collections.deque[int] = collections.deque()

    def put(self, stream: Any) -> None:
        """Take ``stream`` (its ``slot`` set) with both times 0: it is looked at in the next step."""
        slot = stream.slot
        if slot >= len(self._streams):
            grow = max(slot + 1, 2 * len(self._streams)) - len(self._streams)
            self.next_check = np.concatenate([self.next_check, np.full(grow, math.inf)])
            self.along_at = np.concatenate([self.along_at, np.full(grow, math.inf)])
            self._streams += [None] * grow
        self._streams[slot] = stream
        self.next_check[slot] = self.along_at[slot] = 0.0

    def drop(self, stream: Any) -> None:
        """``stream`` left (moved, or finished): never ready again under its slot."""
        slot = stream.slot
        self._streams[slot] = None
        self.next_check[slot] = self.along_at[slot] = math.inf

    def wake(self, slot: int) -> None:
        """Look at the stream in ``slot`` at the next step (its source closed; any thread)."""
        self._woken.append(slot)

    def ready(self, now: float) -> tuple[list[Any], list[bool]]:
        """The streams whose ``next_check`` or ``along_at`` is at or before ``now``, in slot order, and
        for each whether it was its ``next_check``."""
        while self._woken:
            slot = self._woken.popleft()
            self.next_check[slot] = self.along_at[slot] = 0.0
        check = self.next_check <= now
        slots = np.flatnonzero(check | (self.along_at <= now))
        streams = [self._streams[k] for k in slots.tolist()]
        checks = check[slots].tolist()
        if None in streams:  # a slot set since its stream left (a finished stream's times): skipped
            checks = [c for st, c in zip(streams, checks) if st is not None]
            streams = [st for st in streams if st is not None]
        return streams, checks
