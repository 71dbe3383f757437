"""Predominant labels and segments from window probabilities: a moving average, then hysteresis.

An instrument becomes predominant when its probability, averaged over the last ``smooth``
windows, reaches ``on``; it stops when that average falls below ``off`` (``off <= on``, so a
value hovering at the threshold does not flicker). A segment starts at ``t_start`` of the window
that switched it on and ends at ``t_end`` of the last window that kept it on.

:func:`segment` runs the same rule over the windows of a whole file (``classify --segments``), so
an archive is tagged as the live service would have tagged the same audio at the same hop. Only
the times differ: there each window stands for the stretch of time nearer to its centre than to
any other window's centre (the first from 0, the last to the end of the file), so segments tile
the file instead of overlapping by a window.
"""

from __future__ import annotations

import collections
import dataclasses

from typing import Any

import numpy as np

from instrumentd.pipeline.errors import ParameterError

__all__ = ["OFF", "ON", "SMOOTH", "Change", "Segment", "Segmenter", "check_settings", "segment", "window_cells"]

SMOOTH = 3  # windows in the moving average behind labels and segments
ON = 0.5  # smoothed probability at which an instrument becomes predominant
OFF = 0.35  # smoothed probability below which it stops being predominant


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

    def __init__(self, classes: tuple[str, ...], smooth: int = SMOOTH, on: float = ON, off: float = OFF):
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


@dataclasses.dataclass(frozen=True)
class Segment:
    """One stretch of time in which one instrument is predominant."""

    instrument: str  # class code, e.g. "pia"
    start: float  # seconds from the start of the file
    end: float  # seconds
    mean_probability: float  # mean of the instrument's window probabilities over the segment
    windows: int  # windows in the segment

    def to_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "instrument": self.instrument,
                "mean_probability": round(self.mean_probability, 6), "windows": self.windows}


def check_settings(smooth: int, on: float, off: float) -> None:
    """Raise ParameterError naming the bad value unless ``smooth >= 1`` and ``0 < off <= on <= 1``."""
    if smooth < 1:
        raise ParameterError(f"--smooth must be at least 1 window, got {smooth}")
    if not 0 < off <= on <= 1:
        raise ParameterError(f"need 0 < --off <= --on <= 1, got --on {on}, --off {off}")


def window_cells(starts: np.ndarray, clip_seconds: float, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """The stretch of time each window stands for: ``(cell_start [n], cell_end [n])``, seconds.

    ``starts: [n]`` window starts, seconds, increasing. Boundaries lie halfway between
    consecutive window centres; the first cell starts at 0 and the last ends at ``duration``.
    """
    starts = np.asarray(starts, dtype=np.float64)
    centres = starts + clip_seconds / 2
    inner = (centres[:-1] + centres[1:]) / 2
    return np.concatenate([[0.0], inner]), np.concatenate([inner, [duration]])


def segment(probs: np.ndarray, starts: np.ndarray, clip_seconds: float, duration: float,
            classes: tuple[str, ...], smooth: int = SMOOTH, on: float = ON, off: float = OFF) -> list[Segment]:
    """Per-window probabilities of one file -> its segments, sorted by start, then class order.

    Parameters
    ----------
    probs : float [n_windows, n_classes], softmax probabilities
    starts : float [n_windows], window start times, seconds, increasing
    clip_seconds : window length, seconds
    duration : length of the file, seconds
    classes : class codes in the order of ``probs``' columns
    smooth, on, off : the daemon's segmenting settings (windows, probability, probability)
    """
    check_settings(smooth, on, off)
    probs = np.asarray(probs, dtype=np.float64)
    cell_start, cell_end = window_cells(starts, clip_seconds, duration)
    segmenter = Segmenter(classes, smooth, on, off)
    changes = []
    for p, a, b in zip(probs, cell_start, cell_end):
        changes += segmenter.update(p, float(a), float(b))
    changes += segmenter.close("end of stream")
    out = []
    for ch in changes:
        if ch.state == "end":
            first, stop = np.searchsorted(cell_start, ch.start), np.searchsorted(cell_end, ch.end, side="right")
            column = probs[first:stop, classes.index(ch.instrument)]
            out.append(Segment(ch.instrument, ch.start, ch.end, float(column.mean()), int(stop - first)))
    return sorted(out, key=lambda s: (s.start, classes.index(s.instrument)))
