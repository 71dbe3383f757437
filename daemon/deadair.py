"""Dead air: a stream whose level stays under ``silence_db`` for ``silence_s`` seconds is ``silent``
until a block of its audio reaches that level again (``sound``).

The level is the RMS in dBFS of each 100 ms block of the audio as read, at the source's own rate; a
read that is not a whole number of blocks counts its last, shorter block as one. :class:`WindowLevels`
gives each window its level, for the decision that silence names no instrument (model/decision.py).

Both take the audio's squares (``np.square(audio)``, float32), which the worker computes once per
read for them and for the stream's level; sums run in float32 (at most a few thousand positive
terms: a relative error under 1e-4, a thousandth of a dB), which costs half of summing in float64.
"""

from __future__ import annotations

import math

import numpy as np

from instrumentd.pipeline.windows import LEVEL_FLOOR_DB

BLOCK_S = 0.1  # seconds of audio per level measurement


class DeadAir:
    """One stream's silence state.

    Parameters
    ----------
    silence_db : dBFS; a block quieter than this is silence
    silence_s : seconds of consecutive silent blocks before the stream counts as silent
    rate : hz of the audio given to :meth:`push`
    """

    def __init__(self, silence_db: float, silence_s: float, rate: int):
        self.silence_db = silence_db
        self.silence_s = silence_s
        self.rate = rate
        self.block = max(1, int(BLOCK_S * rate))
        self.silent = False
        self.quiet_s = 0.0  # seconds of silence up to the newest block

    def push(self, squares: np.ndarray) -> list[tuple[str, str]]:
        """Add the squares of the next samples, ``float32 [n]`` (audio in [-1, 1], squared); returns the
        state changes, ``("silent" | "sound", reason)``."""
        n = len(squares)
        changes: list[tuple[str, str]] = []
        if n == 0:
            return changes
        edges = np.arange(0, n, self.block)
        power = np.add.reduceat(squares, edges) / np.diff(np.append(edges, n))
        loud = 10 * np.log10(np.maximum(power, 1e-12)) >= self.silence_db
        if loud.any():
            first, last = np.flatnonzero(loud)[[0, -1]]
            if self.silent:
                level = 10 * math.log10(max(float(power[first]), 1e-12))
                quiet_s = self.quiet_s + first * self.block / self.rate
                self.silent = False
                changes.append(("sound", f"level {level:.1f} dBFS after {quiet_s:.1f} s of silence"))
            self.quiet_s = (n - min(n, (int(last) + 1) * self.block)) / self.rate
        else:
            self.quiet_s += n / self.rate
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

    def push(self, squares: np.ndarray, start: int) -> None:
        """Add the squares of samples, ``float32 [n]``, whose first has grid index ``start``.

        One pass over them (summed frame by frame with ``np.add.reduceat``); the rest is per frame.
        Frames older than the ring are not measured at all.
        """
        hop = self.hop
        last = (start + len(squares) - 1) // hop
        cut = max(0, (last - self.size + 1) * hop - start)  # samples before the oldest frame the ring keeps
        if cut:
            squares, start = squares[cut:], start + cut
        if not len(squares):
            return
        first = start // hop
        frames = np.arange(first, last + 1)
        bounds = np.maximum(frames * hop - start, 0)  # where each frame's samples begin in ``squares``
        energy = np.add.reduceat(squares, bounds)
        count = np.diff(np.append(bounds, len(squares)))
        slots = frames % self.size
        # frames new to the ring, those a gap skipped included, replace what their slots held
        fresh = np.arange(max(self.newest + 1, last - self.size + 1), last + 1) % self.size
        self.energy[fresh] = 0.0
        self.count[fresh] = 0
        self.energy[slots] += energy  # one push's frames are distinct, and so are their slots
        self.count[slots] += count
        self.newest = max(self.newest, last)

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
