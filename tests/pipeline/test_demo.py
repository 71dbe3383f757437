"""The bundled demo clip: present, 12.5 s of audio, repeated to any length."""

import numpy as np

from instrumentd.pipeline.audio import load_audio
from instrumentd.pipeline.demo import DEMO_CLIP, demo_audio


def test_the_clip_ships_with_the_package():
    clip = load_audio(DEMO_CLIP)
    assert abs(len(clip) / 44100 - 12.5) < 0.1 and np.abs(clip).max() > 0.05


def test_demo_audio_repeats_the_clip_to_the_length_asked():
    clip = load_audio(DEMO_CLIP)
    long = demo_audio(2 * len(clip) + 5)
    assert long.shape == (2 * len(clip) + 5,) and long.dtype == np.float32
    np.testing.assert_array_equal(long[len(clip): 2 * len(clip)], clip)
    np.testing.assert_array_equal(demo_audio(100), clip[:100])
