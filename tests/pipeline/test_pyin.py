import librosa
import numpy as np
import pytest
import torch

from instrumentd.pipeline.config import DEFAULT, TEN_MS, FeatureConfig
from instrumentd.pipeline.errors import ParameterError
from instrumentd.pipeline.pyin import pyin
from instrumentd.pipeline.pyin_model import pyin_model

from ..conftest import SR, devices, tone

# GM programs of the 11 classes, in DESIGN.md's order
PROGRAMS = {"cel": 42, "cla": 71, "flu": 73, "gac": 24, "gel": 27, "org": 19, "pia": 0, "sax": 65, "tru": 56,
            "vio": 40, "voi": 52}


def settings(cfg: FeatureConfig) -> dict:
    return dict(fmin=cfg.pitch_fmin, fmax=cfg.pitch_fmax, sr=cfg.sample_rate, frame_length=cfg.pitch_frame_length,
                hop_length=cfg.hop_length)


def agreement(ref: tuple, ours: tuple) -> tuple[float, float]:
    """(share of frames with the same voicing, share of both-voiced frames with f0 within 10 cents)."""
    f_ref, v_ref = ref[0], ref[1]
    f_our, v_our = np.asarray(ours[0]), np.asarray(ours[1])
    voicing = float(np.mean(v_ref == v_our))
    both = v_ref & v_our
    cents = np.abs(1200 * np.log2(f_our[both] / f_ref[both]))
    return voicing, float(np.mean(cents <= 10)) if both.any() else 1.0


def assert_agrees(audio: np.ndarray, cfg: FeatureConfig, device: str = "cpu") -> None:
    ref = librosa.pyin(audio, **settings(cfg))
    ours = [x.cpu() for x in pyin(torch.from_numpy(audio).to(device), **settings(cfg))]
    assert ours[0].shape == ref[0].shape
    voicing, cents = agreement(ref, ours)
    assert voicing >= 0.995 and cents >= 0.995, (voicing, cents)
    np.testing.assert_allclose(ours[2].numpy(), ref[2], atol=1e-3)


@pytest.mark.parametrize("cfg", [DEFAULT, pytest.param(TEN_MS, marks=pytest.mark.slow)], ids=["hop1323", "hop441"])
def test_parity_with_librosa_on_renders(renders, cfg):
    assert_agrees(np.stack([renders[k] for k in ("flute", "piano", "violin", "mix")]), cfg)


def _synthetic(seconds: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * SR)) / SR
    vibrato = 0.4 * np.sin(2 * np.pi * 440 * t + 6.0 * np.sin(2 * np.pi * 5.5 * t))  # +-33 Hz at 5.5 Hz
    noise = 0.1 * rng.standard_normal(len(t))
    silence = np.zeros(len(t))
    chord = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (196.0, 246.9, 293.7, 392.0))
    low_and_high = 0.3 * np.sin(2 * np.pi * 70.0 * t) * (t < 1) + 0.3 * np.sin(2 * np.pi * 2000.0 * t) * (t >= 1)
    return np.stack([vibrato, noise, silence, chord, low_and_high]).astype(np.float32)


def test_parity_with_librosa_on_vibrato_noise_silence_chords_and_range_edges():
    assert_agrees(_synthetic(), DEFAULT)


@pytest.mark.slow
def test_parity_with_librosa_on_all_eleven_classes(fluidsynth_available):
    from instrumentd.training.midi import Note, Track
    from instrumentd.training.render import render

    rng = np.random.default_rng(3)
    clips = []
    for channel, program in enumerate(PROGRAMS.values()):
        low = 36 if program in (42, 24, 0, 19) else 55
        notes = [Note(int(p), 0.05 + 0.35 * i, 0.3) for i, p in enumerate(rng.integers(low, low + 30, 5))]
        clips.append(render([Track(program, channel % 9, notes)], "fluidr3", 2.0))
    assert_agrees(np.stack(clips), DEFAULT)


def test_sine_has_its_frequency():
    f0, voiced, prob = pyin(tone(440.0, 1.0), **settings(DEFAULT))
    assert f0.shape == voiced.shape == prob.shape == (1 + SR // DEFAULT.hop_length,)
    assert voiced[2:-2].all() and (prob[2:-2] > 0.9).all()
    assert np.abs(1200 * np.log2(f0[voiced].numpy() / 440.0)).max() < 5


def test_batch_equals_one_by_one_and_silence_is_unvoiced():
    audio = np.stack([tone(220.0, 1.0), np.zeros(SR, np.float32), tone(660.0, 1.0)])
    together = pyin(audio, **settings(DEFAULT))
    for i in range(3):
        alone = pyin(audio[i], **settings(DEFAULT))
        for a, b in zip(together, alone):
            torch.testing.assert_close(a[i], b, rtol=0, atol=0, equal_nan=True)
    assert not together[1][1].any() and torch.isnan(together[0][1]).all()
    assert (pyin(audio[1], fill_na=None, **settings(DEFAULT))[0] >= DEFAULT.pitch_fmin).all()


def test_float64_agrees_with_float32():
    audio = _synthetic(1.0)
    single = pyin(audio, **settings(DEFAULT))
    double = pyin(audio, dtype=torch.float64, **settings(DEFAULT))
    assert torch.equal(single[1], double[1])
    assert torch.allclose(single[0], double[0], equal_nan=True)


@pytest.mark.parametrize("cfg", [DEFAULT, TEN_MS], ids=["hop1323", "hop441"])
def test_transition_band_is_librosas_local_matrix(cfg):
    model = pyin_model(SR, cfg.pitch_fmin, cfg.pitch_fmax, cfg.pitch_frame_length, cfg.hop_length)
    n_bins, width = model.n_bins, model.width
    dense = librosa.sequence.transition_local(n_bins, width, window="triangle", wrap=False)
    band = np.exp(model.log_band)
    half = width // 2
    rebuilt = np.zeros_like(dense)
    for j in range(n_bins):
        for d in range(width):
            if 0 <= j + d - half < n_bins:
                rebuilt[j + d - half, j] = band[j, d]
    np.testing.assert_allclose(rebuilt, dense, rtol=1e-12, atol=0)


def test_model_matches_librosas_constants():
    m = pyin_model(SR, DEFAULT.pitch_fmin, DEFAULT.pitch_fmax, 4096, DEFAULT.hop_length)
    assert (m.min_period, m.max_period, m.n_bins, m.width) == (21, 675, 600, 131)
    assert pyin_model(SR, DEFAULT.pitch_fmin, DEFAULT.pitch_fmax, 4096, 441).width == 41
    assert m.beta_probs.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(fmin=500.0, fmax=400.0), "fmin"),
        (dict(fmin=5.0, fmax=400.0), "frame_length"),
        (dict(fmin=65.0, fmax=400.0, switch_prob=1.5), "switch_prob"),
        (dict(fmin=65.0, fmax=400.0, hop_length=0), "hop_length"),
    ],
)
def test_bad_parameters_are_named(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        pyin(tone(220.0, 0.5), sr=SR, frame_length=4096, **kwargs)


def test_bad_audio_is_named():
    with pytest.raises(ParameterError, match="shape"):
        pyin(np.zeros((2, 2, 9000), np.float32), **settings(DEFAULT))
    bad = tone(220.0, 0.5)
    bad[100] = np.nan
    with pytest.raises(ParameterError, match="NaN"):
        pyin(bad, **settings(DEFAULT))


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", [DEFAULT, TEN_MS], ids=["hop1323", "hop441"])
def test_cuda_agrees_with_librosa(renders, cfg):
    assert_agrees(np.concatenate([np.stack([renders[k] for k in renders]), _synthetic(3.0)]), cfg, "cuda")


@pytest.mark.parametrize("device", devices())
def test_result_stays_on_the_input_device(device):
    f0, voiced, prob = pyin(torch.from_numpy(tone(330.0, 0.5)).to(device), **settings(DEFAULT))
    assert f0.device.type == voiced.device.type == prob.device.type == device
