"""Feature configuration: DESIGN.md's numbers, the frame counts they give, round trips and named bad values."""

import dataclasses

import pytest

from instrumentd.pipeline.config import DEFAULT, TEN_MS, FeatureConfig
from instrumentd.pipeline.errors import ParameterError


def test_defaults_are_designs():
    assert (DEFAULT.sample_rate, DEFAULT.window_length, DEFAULT.hop_length, DEFAULT.n_mels) == (44100, 2205, 1323, 128)
    assert (DEFAULT.top_db, DEFAULT.pitch_fmin, DEFAULT.pitch_fmax, DEFAULT.pitch_frame_length) == (80.0, 65.41, 2093.0, 4096)


def test_three_seconds_are_100_frames_at_30_ms_and_300_at_10_ms():
    assert DEFAULT.clip_samples == 132300
    assert DEFAULT.n_frames == 100 and TEN_MS.n_frames == 300


def test_dict_round_trip_and_equality():
    assert FeatureConfig.from_dict(TEN_MS.to_dict()) == TEN_MS != DEFAULT
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.hop_length = 441


def test_unknown_settings_are_named():
    with pytest.raises(ParameterError, match=r"\['hop'\]"):
        FeatureConfig.from_dict({**DEFAULT.to_dict(), "hop": 441})


@pytest.mark.parametrize("kwargs,match", [
    ({"sample_rate": 0}, "sample_rate must be positive, got 0"),
    ({"hop_length": 0}, "hop_length .* got 0"),
    ({"hop_length": 3000}, "hop_length .* got 3000"),
    ({"n_mels": 4}, "n_mels .* got 4"),
    ({"pitch_fmin": 3000.0}, "pitch_fmin < pitch_fmax"),
    ({"pitch_fmax": 30000.0}, "sr/2"),
    ({"clip_seconds": 0.01}, "clip_seconds=0.01"),
])
def test_bad_values_are_named(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        FeatureConfig(**kwargs)
