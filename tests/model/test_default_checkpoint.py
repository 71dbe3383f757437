"""The shipped checkpoint on real parts: it names an instrument on a fluidsynth render and names none
on espeak-ng speech, on noise and on digital silence."""

import shutil
import subprocess

import numpy as np
import pytest

from instrumentd.model.recognizer import Recognizer
from instrumentd.pipeline import FeatureExtractor
from instrumentd.pipeline.audio import load_audio

SR = 44100


@pytest.fixture(scope="module")
def recognizer():
    rec = Recognizer.from_checkpoint(None, "cpu")
    assert rec.trained and rec.decision.min_confidence > 0, "the default checkpoint carries its decision"
    assert rec.decision.min_voiced > 0, "and rejects windows with too few pitched frames (drums alone)"
    return rec


@pytest.fixture(scope="module")
def extractor(recognizer):
    return FeatureExtractor(recognizer.features, "torch")


def test_a_flute_render_is_a_flute(recognizer, extractor, renders):
    flute = np.tile(renders["flute"], 2)  # 6 s: three windows
    result = recognizer.classify_clip(flute, extractor)
    assert result.none is None and "flu" in result.labels


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_speech_names_no_instrument(recognizer, extractor, tmp_path):
    wav = tmp_path / "news.wav"
    text = ("Good evening and welcome to the late news. Tonight the council voted on the new budget, "
            "and the weather stays cold and windy until the weekend.")
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True, capture_output=True)
    result = recognizer.classify_clip(load_audio(wav, SR), extractor)
    assert result.labels == [] and result.none in ("speech", "no instrument")


def test_noise_and_silence_name_no_instrument(recognizer, extractor):
    rng = np.random.default_rng(0)
    white = (0.1 * rng.standard_normal(8 * SR)).astype(np.float32)
    noise = recognizer.classify_clip(white, extractor)
    assert noise.labels == [] and noise.none == "no instrument"
    silence = recognizer.classify_clip(np.zeros(8 * SR, np.float32), extractor)
    assert silence.labels == [] and silence.none == "silence"
