"""Dead air: a stream whose level stays under ``silence_db`` for ``silence_s`` seconds is ``silent``
until a block of its audio reaches that level again (``sound``).

The level is the RMS in dBFS of each 100 ms block of the audio as read, at the source's own rate; a
read that is not a whole number of blocks counts its last, shorter block as one.
"""

from __future__ import annotations

import math

import numpy as np

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

    def push(self, audio: np.ndarray) -> list[tuple[str, str]]:
        """Add ``audio: float32 [n]`` in [-1, 1]; returns the state changes, ``("silent" | "sound", reason)``."""
        n = len(audio)
        changes: list[tuple[str, str]] = []
        if n == 0:
            return changes
        edges = np.arange(0, n, self.block)
        power = np.add.reduceat(audio.astype(np.float64) ** 2, edges) / np.diff(np.append(edges, n))
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
