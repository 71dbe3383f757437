"""Dead air: a stream whose level stays under ``silence_db`` for ``silence_s`` seconds is ``silent``
until a frame of its audio reaches that level again (``sound``).

Both measure the energy of each 30 ms frame of the stream's grid (44.1 kHz, the features' frames):
:class:`WindowLevels` keeps it to give each window its level, for the decision that silence names no
instrument (model/decision.py), and hands the frames of each read on to :class:`DeadAir`, whose level
is the RMS in dBFS of each of them (a read's first and last frames may be partial: each counts as a
frame of its own). One pass over a read's samples serves both, and the stream's level.

The worker squares each read once (``np.square(audio)``, float32); sums run in float32 (at most a
few thousand positive terms: a relative error under 1e-4, a thousandth of a dB), which costs half of
summing in float64.
"""

from __future__ import annotations

import math

import numpy as np

from instrumentd.pipeline.windows import LEVEL_FLOOR_DB


class DeadAir:
    """One stream's silence state.

    Parameters
    ----------
    silence_db : dBFS; a frame quieter than this is silence
    silence_s : seconds of consecutive silent frames before the stream counts as silent
    rate : hz of the audio whose frames :meth:`push` is given
    """

    def __init__(self, silence_db: float, silence_s: float, rate: int):
        self.silence_db = silence_db
        self.silence_s = silence_s
        self.rate = rate
        self.threshold = 10 ** (silence_db / 10)  # mean square of a frame at silence_db
        self.silent = False
        self.quiet_s = 0.0  # seconds of silence up to the newest frame

    def push(self, energy: np.ndarray, count: np.ndarray) -> list[tuple[str, str]]:
        """Add the next frames: ``energy: float [k]`` the sum of each one's squared samples (audio in
        [-1, 1]), ``count: int [k]`` its samples (> 0), as :meth:`WindowLevels.push` returns them; returns
        the state changes, ``("silent" | "sound", reason)``."""
        changes: list[tuple[str, str]] = []
        if not len(count):
            return changes
        loud = energy >= self.threshold * count
        if loud.any():
            first, last = np.flatnonzero(loud)[[0, -1]]
            if self.silent:
                level = 10 * math.log10(max(float(energy[first]) / int(count[first]), 1e-12))
                quiet_s = self.quiet_s + int(count[:first].sum()) / self.rate
                self.silent = False
                changes.append(("sound", f"level {level:.1f} dBFS after {quiet_s:.1f} s of silence"))
            self.quiet_s = int(count[last + 1 :].sum()) / self.rate
        else:
            self.quiet_s += int(count.sum()) / self.rate
        if not self.silent and self.quiet_s >= self.silence_s:
            self.silent = True
            changes.append(("silent", f"level under {self.silence_db:g} dBFS for {self.quiet_s:.1f} s"))
        return changes

    def restart(self) -> None:
        """After a gap in the audio: the silence so far no longer runs on (the state stays)."""
        self.quiet_s = 0.0


class WindowLevels:
    """The RMS level of any recent window of a stream, from the energy of each 30 ms frame heard.

    Audio is pushed at its grid position (samples at 44.1 kHz since the stream began); the energy
    of the newest ``frames_kept`` frames is kept in a ring, so a window is measured exactly even when
    its audio was read in one large block with audio after it (``file+fast:``).
    """

    def __init__(self, hop_length: int, frames_kept: int):
        self.hop = hop_length
        self.size = frames_kept
        self.energy = np.zeros(frames_kept)
        self.count = np.zeros(frames_kept, np.int64)
        self.newest = -1  # newest frame with audio

    def push(self, squares: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Add the squares of samples, ``float32 [n]``, whose first has grid index ``start``; returns the
        frames they fall in, ``(energy float32 [k], samples int [k])``, first to last (the first and last
        partial when the samples begin or end inside a frame).

        One pass over them (summed frame by frame with ``np.add.reduceat``); the rest is a few array
        operations per read, not per frame (slices of the ring, which wrap at most once), since a
        thousand streams' reads run on one core. The ring keeps the newest ``frames_kept`` frames.
        """
        hop, n = self.hop, len(squares)
        if not n:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        first, last = start // hop, (start + n - 1) // hop
        k = last - first + 1
        bounds = np.arange(first * hop - start, first * hop - start + k * hop, hop)  # each frame's first sample
        bounds[0] = 0
        energy = np.add.reduceat(squares, bounds)
        count = np.full(k, hop, np.int64)
        count[0] = bounds[1] if k > 1 else n
        if k > 1:
            count[-1] = n - bounds[-1]
        # frames new to the ring, those a gap skipped included, start from nothing; then this read's
        # frames that the ring reaches are added (one push's frames are distinct, and so are their slots)
        self._put(max(self.newest + 1, last - self.size + 1), last, None, None)
        kept = min(k, self.size)
        self._put(last - kept + 1, last, energy[k - kept :], count[k - kept :])
        self.newest = max(self.newest, last)
        return energy, count

    def _put(self, lo: int, hi: int, energy: np.ndarray | None, count: np.ndarray | None) -> None:
        """Frames ``lo .. hi`` (at most ``frames_kept`` of them): add ``energy`` and ``count`` to their
        slots, or with ``None`` clear them."""
        if hi < lo:
            return
        a, n = lo % self.size, hi - lo + 1
        first = min(n, self.size - a)  # frames up to the ring's end; the rest wrap to its start
        parts = [(slice(a, a + first), slice(0, first))]
        if n > first:
            parts.append((slice(0, n - first), slice(first, n)))
        for ring_part, part in parts:
            if energy is None:
                self.energy[ring_part] = 0.0
                self.count[ring_part] = 0
            else:
                self.energy[ring_part] += energy[part]
                self.count[ring_part] += count[part]

    def level_db(self, first_frame: int, n_frames: int) -> float:
        """dBFS of frames ``first_frame .. first_frame + n_frames - 1`` (-120 when none was heard or kept)."""
        lo = max(first_frame, self.newest - self.size + 1)
        hi = min(first_frame + n_frames, self.newest + 1)
        if hi <= lo:
            return LEVEL_FLOOR_DB
        a, b = lo % self.size, (hi - 1) % self.size + 1  # the frames' slots: [a, b), or [a, size) and [0, b)
        if a < b:
            count, energy = int(self.count[a:b].sum()), float(self.energy[a:b].sum())
        else:
            count = int(self.count[a:].sum() + self.count[:b].sum())
            energy = float(self.energy[a:].sum() + self.energy[:b].sum())
        if count == 0:
            return LEVEL_FLOOR_DB
        return max(LEVEL_FLOOR_DB, 10 * math.log10(max(energy / count, 1e-30)))
