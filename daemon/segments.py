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

import dataclasses

from typing import Any

import numpy as np

from instrumentd.pipeline.errors import ParameterError

__all__ = ["OFF", "ON", "SMOOTH", "Change", "Segment", "Segmenter", "SegmenterTable", "check_settings", "segment",
           "window_cells"]

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


class SegmenterTable:
    """Every stream's smoothing and hysteresis state as arrays, one row per stream, stepped for a
    whole batch of windows at once.

    Parameters
    ----------
    classes : class names, in the order of the probabilities
    smooth : windows in the moving average (1 = none)
    on, off : thresholds on the averaged probability, ``0 < off <= on <= 1``

    State per row: the last ``smooth`` windows' probabilities ``float64 [smooth, n_classes]`` (a ring
    whose unfilled rows are 0, so the mean is its sum over how many count), which instruments are on
    ``bool [n_classes]`` and since when (s).
    """

    def __init__(self, classes: tuple[str, ...], smooth: int = SMOOTH, on: float = ON, off: float = OFF):
        self.classes = classes
        self.on, self.off = on, off
        self.rows = 0
        c = len(classes)
        self._recent = np.zeros((0, smooth, c))
        self._count = np.zeros(0, np.int64)  # windows in the average, at most smooth
        self._next = np.zeros(0, np.int64)  # ring row the next window goes to
        self._on = np.zeros((0, c), bool)
        self._since = np.zeros((0, c))  # start of each open segment, s
        self._last_end = np.zeros(0)  # end of each row's last window, s
        self._labels: list[list[str]] = []  # each row's open instruments, in class order

    def add(self) -> "Segmenter":
        """A new row (room doubled when full), as a :class:`Segmenter` for that stream."""
        if self.rows == len(self._count):
            grow = max(1, self.rows)
            self._recent = np.concatenate([self._recent, np.zeros((grow, *self._recent.shape[1:]))])
            self._on = np.concatenate([self._on, np.zeros((grow, len(self.classes)), bool)])
            self._since = np.concatenate([self._since, np.zeros((grow, len(self.classes)))])
            self._count, self._next, self._last_end = (np.concatenate([a, np.zeros(grow, a.dtype)])
                                                      for a in (self._count, self._next, self._last_end))
        self._labels.append([])
        self.rows += 1
        return Segmenter(self.classes, table=self, row=self.rows - 1)

    def update(self, rows, probabilities: np.ndarray, t_start, t_end) -> tuple[list[list[str]], list[list[Change]]]:
        """Add a batch of windows, in stream order where a row comes more than once.

        ``rows: int [n]``; ``probabilities: [n, n_classes]``; ``t_start, t_end: [n]`` s. Returns each
        window's labels after it (the instruments predominant then, class order) and its changes.
        """
        rows = np.asarray(rows, np.int64)
        probabilities = np.asarray(probabilities, np.float64)
        t_start, t_end = np.asarray(t_start, np.float64), np.asarray(t_end, np.float64)
        labels: list[list[str]] = [[]] * len(rows)
        changes: list[list[Change]] = [[]] * len(rows)
        for batch in _rounds(rows):  # a row's windows one round each, in order
            r = rows[batch]
            self._recent[r, self._next[r]] = probabilities[batch]
            self._next[r] = (self._next[r] + 1) % self._recent.shape[1]
            self._count[r] = np.minimum(self._count[r] + 1, self._recent.shape[1])
            mean = self._recent[r].sum(axis=1) / self._count[r][:, None]
            on = self._on[r]
            flipped, classes = np.nonzero((on & (mean < self.off)) | (~on & (mean >= self.on)))
            for i, c in zip(flipped, classes):  # a few a minute: one by one
                changes[batch[i]] = changes[batch[i]] + [self._flip(r[i], c, t_start[batch[i]])]
            self._last_end[r] = t_end[batch]
            for i in dict.fromkeys(flipped.tolist()):  # the rows that changed: their labels anew
                self._labels[r[i]] = [self.classes[c] for c in np.flatnonzero(self._on[r[i]])]
            for i, k in enumerate(batch):
                labels[k] = self._labels[r[i]]
        return labels, changes

    def _flip(self, row: int, c: int, t_start: float) -> Change:
        """Switch instrument ``c`` of ``row`` on at ``t_start`` or off at the row's last window's end."""
        name = self.classes[c]
        if self._on[row, c]:
            self._on[row, c] = False
            return Change(name, "end", float(self._since[row, c]), float(self._last_end[row]), "change")
        self._on[row, c] = True
        self._since[row, c] = t_start
        return Change(name, "start", float(t_start), None, None)

    def close(self, row: int, reason: str) -> list[Change]:
        """End every open segment of ``row`` at its last window's end."""
        changes = [Change(self.classes[c], "end", float(self._since[row, c]), float(self._last_end[row]), reason)
                   for c in np.flatnonzero(self._on[row])]
        self._on[row] = False
        self._labels[row] = []
        return changes

    def reset(self, row: int) -> None:
        """Forget ``row``'s moving average; its open segments stay open."""
        self._recent[row] = 0.0  # the mean sums the whole ring: rows not yet refilled must add nothing
        self._count[row] = 0
        self._next[row] = 0

    def labels(self, row: int) -> list[str]:
        """Instruments predominant in ``row`` now, in class order."""
        return self._labels[row]


def _rounds(rows: np.ndarray) -> list[np.ndarray]:
    """Positions of ``rows`` in rounds with no row twice: a row's first occurrence in round 0, its second
    in round 1, ... (positions increasing within a round)."""
    if len(set(rows.tolist())) == len(rows):  # the usual step: each stream once
        return [np.arange(len(rows))]
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    first = np.r_[True, sorted_rows[1:] != sorted_rows[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0))
    rank = np.empty(len(rows), np.int64)
    rank[order] = np.arange(len(rows)) - group_start
    return [np.flatnonzero(rank == k) for k in range(rank.max() + 1)]


class Segmenter:
    """One stream's smoothing and hysteresis: a row of a :class:`SegmenterTable` (a table of its own
    when made alone, as a file's :func:`segment` does).

    Parameters
    ----------
    classes : class names, in the order of the probabilities
    smooth : windows in the moving average (1 = none)
    on, off : thresholds on the averaged probability, ``0 < off <= on <= 1``
    table, row : the table and row it is (:meth:`SegmenterTable.add`); the settings are then the table's
    """

    def __init__(self, classes: tuple[str, ...], smooth: int = SMOOTH, on: float = ON, off: float = OFF,
                 table: SegmenterTable | None = None, row: int = 0):
        if table is None:
            table = SegmenterTable(classes, smooth, on, off)
            row = table.add().row
        self.table, self.row = table, row

    @property
    def labels(self) -> list[str]:
        """Instruments predominant now, in class order."""
        return self.table.labels(self.row)

    def update(self, probabilities: np.ndarray, t_start: float, t_end: float) -> list[Change]:
        """Add one window ``probabilities: [n_classes]`` spanning ``[t_start, t_end]`` s; return the changes."""
        return self.table.update([self.row], np.asarray(probabilities)[None], [t_start], [t_end])[1][0]

    def close(self, reason: str) -> list[Change]:
        """End every open segment at the last window's end (``reason``: ``end of stream``, ``source failed``
        or ``shutdown``)."""
        return self.table.close(self.row, reason)

    def reset(self) -> None:
        """Forget the moving average (after a gap in the audio); open segments stay open."""
        self.table.reset(self.row)


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
