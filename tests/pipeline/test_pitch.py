"""Pitch engines on tones of known pitch: both engines find the note, agree with each other, and are chosen by name."""

import numpy as np
import pytest
import torch

from instrumentd.pipeline.config import DEFAULT, TEN_MS
from instrumentd.pipeline.errors import ParameterError
from instrumentd.pipeline.pitch import DEFAULT_ENGINE, ENGINES, get_engine, librosa_pyin, pyin_settings, torch_pyin

from ..conftest import notes, tone


def cents(f0: np.ndarray, ref: float) -> np.ndarray:
    return np.abs(1200 * np.log2(f0 / ref))


@pytest.mark.parametrize("engine,cfg", [("torch", DEFAULT), ("torch", TEN_MS), ("librosa", DEFAULT)],
                         ids=["torch-100-frames", "torch-300-frames", "librosa-100-frames"])
def test_engines_find_the_pitch_of_a_tone(engine, cfg):
    f0 = get_engine(engine)(np.stack([tone(110.0, 0.6), tone(440.0, 0.6), tone(1318.5, 0.6)]), cfg)
    assert f0.shape == (3, int(0.6 * cfg.sample_rate) // cfg.hop_length) and f0.dtype == np.float32
    inner = slice(4, -4)  # the centred frames at the ends see the zero padding
    for row, ref in zip(f0, (110.0, 440.0, 1318.5)):
        assert cents(row[inner], ref).max() < 15, (ref, row[inner])  # the pitch grid is 10 cents


def test_silence_is_unvoiced_in_both_engines():
    silence = np.zeros((1, 22050), np.float32)
    assert np.isnan(torch_pyin(silence)).all() and np.isnan(librosa_pyin(silence)).all()


def test_the_torch_engine_is_the_default_and_agrees_with_the_reference_on_notes():
    assert DEFAULT_ENGINE == "torch" and ENGINES["torch"] is torch_pyin and ENGINES["librosa"] is librosa_pyin
    audio = np.stack([notes([196.0, 329.6, 523.3, 880.0], 0.3, 0.1), notes([740.0, 440.0, 293.7, 98.0], 0.3, 0.1)])
    ours, ref = torch_pyin(audio), librosa_pyin(audio)
    assert ours.shape == ref.shape == (2, audio.shape[1] // DEFAULT.hop_length)
    assert np.mean(np.isnan(ours) == np.isnan(ref)) >= 0.99
    both = ~np.isnan(ours) & ~np.isnan(ref)
    assert np.mean(np.abs(1200 * np.log2(ours[both] / ref[both])) <= 10) >= 0.99


def test_torch_engine_takes_a_tensor_and_a_single_clip():
    f0 = torch_pyin(torch.from_numpy(tone(220.0, 1.0)))
    assert f0.shape == (1, 44100 // DEFAULT.hop_length)
    assert cents(f0[0, 4:-4], 220.0).max() < 15


def test_settings_are_designs():
    assert pyin_settings(TEN_MS) == {"fmin": 65.41, "fmax": 2093.0, "sr": 44100, "frame_length": 4096,
                                     "hop_length": 441, "center": True}


def test_an_unknown_engine_is_named_with_the_choices():
    with pytest.raises(ParameterError, match=r"'crepe'.*\['librosa', 'torch'\]"):
        get_engine("crepe")


def test_the_engines_agree_on_renders(renders):
    audio = np.stack([renders["flute"], renders["mix"]])
    ours = get_engine("torch")(audio, DEFAULT)
    ref = get_engine("librosa")(audio, DEFAULT)
    assert ours.shape == ref.shape == (2, DEFAULT.n_frames) and ours.dtype == np.float32
    assert np.mean(np.isnan(ours) == np.isnan(ref)) >= 0.995
    both = ~np.isnan(ours) & ~np.isnan(ref)
    assert np.mean(np.abs(1200 * np.log2(ours[both] / ref[both])) <= 10) >= 0.995
