"""Cutting audio into fixed-length windows with a hop: a clip in memory, or a file block by block."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile
import soxr

from .audio import sanitize, to_mono
from .errors import AudioError, ParameterError

__all__ = ["LEVEL_FLOOR_DB", "FileWindows", "cut_windows", "levels_dbfs", "window_starts"]

READ_SECONDS = 20.0  # seconds of audio decoded per block: memory stays flat on hour-long files


def window_starts(n_samples: int, window: int, hop: int) -> np.ndarray:
    """Start sample of each window ``[n_windows]``: 0, hop, 2*hop, ... while a whole window fits.

    A clip shorter than one window still gets one window (zero-padded by :func:`cut_windows`);
    a tail shorter than the hop past the last whole window is covered by one final window
    that ends at the clip's end, so no audio is left unheard.
    """
    if window <= 0 or hop <= 0:
        raise ParameterError(f"window and hop must be positive samples, got {window}, {hop}")
    if n_samples <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n_samples - window + 1, hop, dtype=np.int64)
    if starts[-1] + window < n_samples:
        starts = np.append(starts, n_samples - window)
    return starts


def cut_windows(audio: np.ndarray, window: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """``audio: [samples]`` -> ``(windows [n, window], starts [n])``; short clips are zero-padded."""
    if audio.ndim != 1:
        raise ParameterError(f"audio must be [samples], got shape {audio.shape}")
    if len(audio) < window:
        audio = np.pad(audio, (0, window - len(audio)))
    starts = window_starts(len(audio), window, hop)
    index = starts[:, None] + np.arange(window)[None, :]
    return audio[index], starts


class FileWindows:
    """Decode ``path`` block by block, resample to ``sr`` and yield ``(start_sample, window [window])``.

    ``window`` and ``hop`` are samples at ``sr``; blocks of ``block_seconds`` are decoded at a time.

    The windows are those of :func:`cut_windows` on the whole file (read with
    :func:`~instrumentd.pipeline.audio.load_audio`), without holding the whole file in memory;
    after the last one, :attr:`total` holds the file's length in samples at ``sr``.
    """

    def __init__(self, path: Path, sr: int, window: int, hop: int, block_seconds: float = READ_SECONDS):
        self.path, self.sr, self.window, self.hop = path, sr, window, hop
        self.block_seconds = block_seconds
        self.total = 0

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        if not self.path.is_file():
            raise AudioError(f"{self.path}: no such file")
        try:
            f = soundfile.SoundFile(str(self.path))
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise AudioError(f"{self.path}: cannot decode audio ({exc})") from None
        with f:
            resampler = soxr.ResampleStream(f.samplerate, self.sr, 1, dtype="float32", quality="HQ") \
                if f.samplerate != self.sr else None
            buf = np.zeros(0, np.float32)  # samples from buf_start on
            buf_start = next_start = emitted = 0
            block = max(1, int(self.block_seconds * f.samplerate))
            while True:
                try:
                    raw = f.read(block, dtype="float32", always_2d=True)
                except (soundfile.LibsndfileError, RuntimeError) as exc:
                    raise AudioError(f"{self.path}: cannot decode audio ({exc})") from None
                last = len(raw) < block
                mono = to_mono(raw).astype(np.float32, copy=False)
                if resampler is not None:
                    mono = resampler.resample_chunk(mono, last=last)
                buf = np.concatenate([buf, sanitize(np.array(mono, np.float32))])
                while next_start + self.window <= buf_start + len(buf):
                    o = next_start - buf_start
                    yield next_start, buf[o : o + self.window].copy()
                    next_start += self.hop
                    emitted += 1
                if last:
                    break
                # keep at least one window's worth: the last window of a file ends at its very end
                keep = max(0, min(next_start - buf_start, len(buf) - self.window))
                buf, buf_start = buf[keep:], buf_start + keep
        self.total = buf_start + len(buf)
        if self.total == 0:
            raise AudioError(f"{self.path}: file holds no audio samples")
        # the regular windows are a prefix of window_starts(); what is left is the tail window
        for s in window_starts(self.total, self.window, self.hop)[emitted:]:
            piece = buf[int(s) - buf_start : int(s) - buf_start + self.window]
            yield int(s), np.pad(piece, (0, self.window - len(piece)))


LEVEL_FLOOR_DB = -120.0  # dBFS reported for digital silence


def levels_dbfs(windows: np.ndarray) -> np.ndarray:
    """``windows: float [n, samples]`` (full scale 1.0) -> RMS level of each, dBFS ``float64 [n]``."""
    windows = np.atleast_2d(np.asarray(windows, dtype=np.float64))
    power = np.mean(windows**2, axis=1) if windows.shape[1] else np.zeros(len(windows))
    return np.maximum(LEVEL_FLOOR_DB, 10 * np.log10(np.maximum(power, 1e-30)))
