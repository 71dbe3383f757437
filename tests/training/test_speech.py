"""espeak-ng speech: real renders, disjoint training and check pools."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from instrumentd.training import speech
from instrumentd.training.render import RenderError

SR = 44100


@pytest.fixture(scope="module")
def espeak():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (make system-deps)")


def test_training_and_check_pools_share_no_voice_or_language():
    train, check = speech.POOLS["train"], speech.POOLS["check"]
    assert not set(train["languages"]) & set(check["languages"])
    assert not set(train["variants"]) & set(check["variants"])
    for pool in speech.POOLS.values():
        assert all(lang in speech.WORDS for lang in pool["languages"])


def test_every_voice_speaks(espeak):
    for pool in speech.POOLS.values():
        for lang in pool["languages"]:
            for variant in pool["variants"][:3]:
                x = speech.speak(speech.Utterance(" ".join(speech.WORDS[lang][:3]), f"{lang}+{variant}", 160, 50, 0), SR)
                assert x.dtype == np.float32 and 0.3 * SR < len(x) < 5 * SR and np.abs(x).max() > 0.05


def test_faster_speech_is_shorter(espeak):
    text = " ".join(speech.WORDS["en"][:10])
    slow = speech.speak(speech.Utterance(text, "en+m1", 110, 50, 0), SR)
    fast = speech.speak(speech.Utterance(text, "en+m1", 220, 50, 0), SR)
    assert len(fast) < 0.7 * len(slow)


def test_talk_fills_the_clip_with_speech_and_pauses(espeak):
    x = speech.talk(np.random.default_rng(0), 5 * SR, SR, "check")
    assert x.shape == (5 * SR,)
    frames = x[: len(x) // 1024 * 1024].reshape(-1, 1024)
    loud = np.sqrt((frames**2).mean(1)) > 0.01
    assert 0.3 < loud.mean() < 1.0  # speech with gaps between words and sentences


def test_unknown_voice_is_a_render_error(espeak):
    with pytest.raises(RenderError, match="espeak-ng failed"):
        speech.speak(speech.Utterance("hello", "xx-nope", 160, 50, 0), SR)
