"""Reliability fixtures: the daemon fixtures of tests/daemon, one-line error checks, bad files of every kind."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile

from ..daemon.conftest import Subscriber, melody, notify_socket, subscriber, wav, windows_of  # noqa: F401

SR = 44100


def wav_bytes(seconds: float = 0.5, sr: int = 22050, channels: int = 1, fmt: str = "WAV",
              subtype: str = "PCM_16") -> bytes:
    """A real encoded file of :func:`melody` in memory."""
    buf = io.BytesIO()
    soundfile.write(buf, melody(seconds, sr, channels), sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.fixture
def bad_files(tmp_path):
    """``{kind: Path}`` of files no decoder should accept as audio, or that hold none."""
    good = wav_bytes(1.0)
    folder = tmp_path / "bad"
    folder.mkdir()
    files = {
        "empty": b"",
        "text": b"this is a shopping list, not audio\n" * 40,
        "truncated_header": good[:30],
        "corrupt_header": good[:8] + b"JUNKJUNK" + good[16:],
        # a RIFF header that promises audio, then none
        "no_samples": b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 22050, 44100, 2, 16)
        + b"data" + struct.pack("<I", 0),
        "png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    }
    out = {}
    for name, data in files.items():
        path = folder / f"{name}.wav"
        path.write_bytes(data)
        out[name] = path
    return out


def samples_with(kind: str, seconds: float = 3.2, sr: int = SR) -> np.ndarray:
    """``float32 [n]``: a melody spoiled by ``kind`` (nan_inf, dc, clipped, silent, huge)."""
    x = melody(seconds, sr)[:, 0].copy()
    if kind == "nan_inf":
        x[::97] = np.nan
        x[1::101] = np.inf
        x[2::103] = -np.inf
    elif kind == "dc":
        x = np.full_like(x, 0.7)
    elif kind == "clipped":
        x = np.clip(x * 40, -1, 1)
    elif kind == "silent":
        x = np.zeros_like(x)
    elif kind == "huge":
        x = x * 1e30
    return x
