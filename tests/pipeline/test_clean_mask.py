import numpy as np
import pytest
import torch

from instrumentd.pipeline.clean_mask import clean_f0, clean_mask
from instrumentd.pipeline.config import DEFAULT
from instrumentd.pipeline.errors import ParameterError
from instrumentd.pipeline.mask import f0_to_mask

from ..conftest import devices

NAN = np.nan


def track(*values: float) -> np.ndarray:
    return np.array(values, np.float32)


def same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


def test_steady_track_is_unchanged():
    f0 = track(*[220.0] * 12)
    assert same(clean_f0(f0), f0)


def test_silence_stays_silent():
    assert np.isnan(clean_f0(np.full(10, NAN, np.float32)).numpy()).all()


def test_median_filter_removes_an_octave_jump():
    f0 = track(220, 220, 220, 220, 440, 220, 220, 220, 220)
    assert same(clean_f0(f0), [220.0] * 9)


def test_median_filter_keeps_a_real_note_change():
    f0 = track(*[220.0] * 6, *[330.0] * 6)
    assert same(clean_f0(f0), f0)


def test_threshold_smoothing_fills_a_one_frame_gap_with_the_neighbours_pitch():
    f0 = track(220, 220, 220, 220, NAN, 220, 220, 220, 220)
    assert same(clean_f0(f0), [220.0] * 9)


def test_isolated_activations_are_removed():
    # a two-frame blip survives smoothing (2 of 3 voiced) but is shorter than min_run
    f0 = track(NAN, NAN, NAN, 300, 300, NAN, NAN, NAN, NAN)
    assert np.isnan(clean_f0(f0).numpy()).all()
    assert same(clean_f0(f0, min_run=2), f0)
    one = track(NAN, NAN, NAN, 300, NAN, NAN, NAN)
    assert np.isnan(clean_f0(one, min_run=1).numpy()).all()  # smoothing alone drops a single frame


def test_voiced_prob_thresholds_the_voicing():
    f0 = track(*[220.0] * 10)
    prob = track(0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9)
    # frames 4..6 average below 0.5; frame 3 and 7 average (0.9+0.9+0.1)/3 >= 0.5
    assert same(clean_f0(f0, prob), [220.0] * 4 + [NAN] * 3 + [220.0] * 3)
    assert same(clean_f0(f0, prob, threshold=0.05), f0)


def test_batched_rows_are_independent_and_one_d_works():
    a = track(220, 220, 220, 220, 440, 220, 220)
    b = track(NAN, NAN, 300, 300, NAN, NAN, NAN)
    both = clean_f0(np.stack([a, b]))
    assert both.shape == (2, 7)
    assert same(both[0], clean_f0(a)) and same(both[1], clean_f0(b))


@pytest.mark.parametrize("device", devices())
def test_clean_mask_on_device_matches_cpu(device):
    rng = np.random.default_rng(0)
    f0 = np.where(rng.random((3, 100)) < 0.3, rng.uniform(80, 1500, (3, 100)), NAN).astype(np.float32)
    on_cpu = clean_mask(f0)
    on_dev = clean_mask(torch.from_numpy(f0).to(device))
    assert on_dev.device.type == device and on_dev.shape == (3, DEFAULT.n_mels, 100)
    assert torch.equal(on_dev.cpu(), on_cpu)
    assert torch.equal(on_cpu, f0_to_mask(clean_f0(f0), DEFAULT))
    assert on_cpu.sum() < f0_to_mask(f0, DEFAULT).sum()  # random voicing: many isolated frames go


@pytest.mark.parametrize(
    "kwargs", [{"median_frames": 4}, {"smooth_frames": 0}, {"threshold": 0.0}, {"min_run": 0}]
)
def test_bad_parameters_are_named(kwargs):
    with pytest.raises(ParameterError, match=next(iter(kwargs))):
        clean_f0(track(220, 220, 220), **kwargs)
