"""The speech detector on real speech (espeak-ng) and on a tone, with the weights its wheel ships."""

import shutil
import subprocess

import numpy as np
import pytest

from instrumentd.pipeline.audio import load_audio
from instrumentd.pipeline.speech import speech_detector

SR = 44100


@pytest.fixture(scope="module")
def detector():
    found = speech_detector()
    if found is None:
        pytest.skip("silero-vad is not installed")
    return found


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_speech_is_speech_and_a_tone_is_not(detector, tmp_path):
    wav = tmp_path / "news.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "Good evening. Here is the news, read to you at nine o'clock."],
                   check=True, capture_output=True)
    speech = load_audio(wav, SR)[: 3 * SR]
    speech = np.pad(speech, (0, 3 * SR - len(speech)))
    t = np.arange(3 * SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    assert detector(np.stack([speech, tone, np.zeros(3 * SR, np.float32)]), SR).tolist() == [True, False, False]
