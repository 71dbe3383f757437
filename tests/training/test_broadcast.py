"""Broadcast codecs through a real ffmpeg: the length kept, the band a low bitrate cannot carry gone."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from instrumentd.pipeline.errors import ParameterError
from instrumentd.training.broadcast import CODECS, parse_codec, round_trip

SR = 44100
pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def band_db(x: np.ndarray, hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(hz * len(x) / SR)
    return 10 * np.log10((spectrum[k - 20 : k + 21] ** 2).sum() + 1e-20)


def test_each_codec_keeps_the_length_and_a_1_khz_tone_and_mp3_at_64k_drops_17_khz():
    t = np.arange(2 * SR) / SR
    low = 0.3 * np.sin(2 * np.pi * 1000 * t)
    x = (low + 0.3 * np.sin(2 * np.pi * 17000 * t)).astype(np.float32)
    for name in CODECS:
        y = round_trip(x, SR, f"{name}:64")
        assert y.shape == x.shape and y.dtype == np.float32 and np.abs(y).max() <= 1.0
        assert band_db(y, 1000) == pytest.approx(band_db(x, 1000), abs=1.0), name
    mp3 = round_trip(x, SR, "mp3:64")
    assert band_db(mp3, 17000) < band_db(x, 17000) - 40  # LAME's low-pass at 64 kbit/s
    assert not np.allclose(mp3[SR // 2 : -SR // 2], x[SR // 2 : -SR // 2], atol=0.05)


def test_a_codec_is_a_name_and_a_bitrate():
    assert parse_codec("opus:48") == ("opus", 48)
    for bad in ("flac:64", "mp3", "mp3:fast", "aac:0"):
        with pytest.raises(ParameterError, match="CODEC:KBPS"):
            parse_codec(bad)
