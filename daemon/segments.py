"""Predominant labels and segments from window probabilities: a moving average, then hysteresis.

An instrument becomes predominant when its probability, averaged over the last ``smooth``
windows, reaches ``on``; it stops when that average falls below ``off`` (``off <= on``, so a
value hovering at the threshold does not flicker). A segment starts at ``t_start`` of the window
that switched it on and ends at ``t_end`` of the last window that kept it on.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Change:
    """``state`` ``start`` (``end`` None) or ``end``; times in seconds of stream time."""

    instrument: str
    state: str
    start: float
    end: float | None
    reason: str | None


class Segmenter:
    """One stream's smoothing and hysteresis state.

    Parameters
    ----------
    classes : class names, in the order of the probabilities
    smooth : windows in the moving average (1 = none)
    on, off : thresholds on the averaged probability, ``0 < off <= on <= 1``
    """

    def __init__(self, classes: tuple[str, ...], smooth: int = 3, on: float = 0.5, off: float = 0.35):
        self.classes = classes
        self.on, self.off = on, off
        self._recent: collections.deque[np.ndarray] = collections.deque(maxlen=smooth)
        self._open: dict[str, float] = {}  # instrument -> segment start
        self._last_end = 0.0

    @property
    def labels(self) -> list[str]:
        """Instruments predominant now, in class order."""
        return [c for c in self.classes if c in self._open]

    def update(self, probabilities: np.ndarray, t_start: float, t_end: float) -> list[Change]:
        """Add one window ``probabilities: [n_classes]`` spanning ``[t_start, t_end]`` s; return the changes."""
        self._recent.append(np.asarray(probabilities, dtype=np.float64))
        mean = np.mean(self._recent, axis=0)
        changes = []
        for c, p in zip(self.classes, mean):
            if c in self._open and p < self.off:
                changes.append(Change(c, "end", self._open.pop(c), self._last_end, "change"))
            elif c not in self._open and p >= self.on:
                self._open[c] = t_start
                changes.append(Change(c, "start", t_start, None, None))
        self._last_end = t_end
        return changes

    def close(self, reason: str) -> list[Change]:
        """End every open segment at the last window's end (``reason``: ``end of stream``, ``source failed``
        or ``shutdown``)."""
        changes = [Change(c, "end", self._open[c], self._last_end, reason) for c in self.labels]
        self._open.clear()
        return changes

    def reset(self) -> None:
        """Forget the moving average (after a gap in the audio); open segments stay open."""
        self._recent.clear()
