import librosa
import numpy as np
import pytest
import torch

from instrumentd.pipeline.config import DEFAULT, TEN_MS, FeatureConfig
from instrumentd.pipeline.mel import MelFrontEnd, mel_band_centres, mel_filterbank

from ..conftest import devices, notes, tone

TOLERANCE_DB = 1e-3


def librosa_mel_db(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    s = librosa.feature.melspectrogram(
        y=audio, sr=cfg.sample_rate, n_fft=cfg.window_length, hop_length=cfg.hop_length, n_mels=cfg.n_mels
    )
    return librosa.power_to_db(s, ref=np.max, top_db=cfg.top_db)[..., : audio.shape[-1] // cfg.hop_length]


@pytest.mark.parametrize("cfg", [DEFAULT, FeatureConfig(sample_rate=22050, window_length=1024, hop_length=512, n_mels=64)],
                         ids=["default", "22k-64-bands"])
def test_filterbank_and_band_centres_are_librosas_to_the_bit(cfg):
    want = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.window_length, n_mels=cfg.n_mels)
    got = mel_filterbank(cfg)
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    centres = librosa.mel_frequencies(n_mels=cfg.n_mels + 2, fmin=0.0, fmax=cfg.sample_rate / 2)[1:-1]
    np.testing.assert_array_equal(mel_band_centres(cfg), centres)


@pytest.mark.parametrize("cfg", [DEFAULT, TEN_MS], ids=["100-frames", "300-frames"])
@pytest.mark.parametrize("name", ["flute", "piano", "violin", "mix"])
def test_parity_with_librosa_on_renders(renders, name, cfg):
    audio = renders[name]
    ours = MelFrontEnd(cfg)(torch.from_numpy(audio)).numpy()[0]
    assert ours.shape == (128, cfg.n_frames)
    np.testing.assert_allclose(ours, librosa_mel_db(audio, cfg), atol=TOLERANCE_DB, rtol=0)


@pytest.mark.parametrize("device", devices())
def test_batched_equals_one_by_one(device):
    fe = MelFrontEnd().to(device)
    batch = np.stack([notes([f * 2 ** (k / 12) for k in range(6)], 0.4, 0.1, seed=i) for i, f in
                      enumerate((110.0, 261.6, 659.3))])
    together = fe(torch.from_numpy(batch).to(device)).cpu().numpy()
    for i in range(3):
        np.testing.assert_allclose(together[i], librosa_mel_db(batch[i], DEFAULT), atol=TOLERANCE_DB, rtol=0)


def test_silence_is_flat_zero_db():
    # all power at the floor: ref = floor, so every bin is 0 dB, exactly as librosa says
    silence = np.zeros(DEFAULT.clip_samples, np.float32)
    ours = MelFrontEnd()(torch.from_numpy(silence)).numpy()[0]
    np.testing.assert_allclose(ours, librosa_mel_db(silence, DEFAULT), atol=TOLERANCE_DB)
    assert np.all(ours == 0.0)


def test_clipped_square_wave():
    clipped = np.clip(tone(220.0, amp=4.0), -1.0, 1.0)
    ours = MelFrontEnd()(torch.from_numpy(clipped)).numpy()[0]
    np.testing.assert_allclose(ours, librosa_mel_db(clipped, DEFAULT), atol=TOLERANCE_DB, rtol=0)


def test_too_short_input_gives_its_frames():
    short = tone(440.0, seconds=0.2)
    ours = MelFrontEnd()(torch.from_numpy(short)).numpy()[0]
    assert ours.shape == (128, len(short) // DEFAULT.hop_length)
    np.testing.assert_allclose(ours, librosa_mel_db(short, DEFAULT), atol=TOLERANCE_DB, rtol=0)


def test_level_invariant_and_top_db_floor():
    x = tone(440.0)
    loud, quiet = (MelFrontEnd()(torch.from_numpy(a)).numpy()[0] for a in (x, x * 0.1))
    np.testing.assert_allclose(loud, quiet, atol=1e-3)
    assert loud.max() == 0.0 and loud.min() >= -DEFAULT.top_db


def test_tone_peaks_in_its_band():
    ours = MelFrontEnd()(torch.from_numpy(tone(1000.0))).numpy()[0]
    peak_band = int(ours.mean(axis=1).argmax())
    centres = mel_band_centres()
    assert abs(centres[peak_band] - 1000.0) < (centres[peak_band + 1] - centres[peak_band - 1])
