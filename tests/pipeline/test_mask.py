import numpy as np
import pytest
import torch

from instrumentd.pipeline.config import DEFAULT
from instrumentd.pipeline.features import FeatureExtractor
from instrumentd.pipeline.mask import band_to_mask, f0_to_band, f0_to_mask, predominant_spectrogram, voiced_share
from instrumentd.pipeline.mel import mel_band_centres

from ..conftest import tone


def test_exact_band_centres_map_to_their_band():
    centres = mel_band_centres()
    f0 = torch.tensor(centres[None, :], dtype=torch.float64)
    assert torch.equal(f0_to_band(f0)[0], torch.arange(128))


def test_hand_computed_nearest_band():
    c = mel_band_centres()
    # just below / above the midpoint between bands 40 and 41 (in hz, not mel)
    mid = (c[40] + c[41]) / 2
    f0 = np.array([[mid - 0.01, mid + 0.01, np.nan, 0.0, -5.0, 1e6, 1.0]])
    band = f0_to_band(f0).tolist()[0]
    assert band == [40, 41, -1, -1, -1, 127, 0]


def test_mask_is_one_hot_on_voiced_frames_only():
    f0 = np.array([[440.0, np.nan, 880.0]])
    mask = f0_to_mask(f0)
    assert mask.shape == (1, 128, 3)
    assert mask.dtype == torch.float32
    assert mask[0, :, 0].sum() == 1 and mask[0, :, 1].sum() == 0 and mask[0, :, 2].sum() == 1
    assert int(mask[0, :, 2].argmax()) > int(mask[0, :, 0].argmax())
    manual = torch.zeros(1, 128, 3)
    for t, b in enumerate(f0_to_band(f0)[0].tolist()):
        if b >= 0:
            manual[0, b, t] = 1
    assert torch.equal(mask, manual)


def test_band_to_mask_batch():
    band = torch.tensor([[0, 127, -1], [5, 5, 5]])
    mask = band_to_mask(band, 128)
    assert mask.sum().item() == 5
    assert mask[1, 5].tolist() == [1, 1, 1]


def test_pred_spec_is_elementwise_product():
    mel = -torch.rand(2, 128, 4) * 80
    mask = f0_to_mask(np.full((2, 4), 300.0))
    out = predominant_spectrogram(mel, mask)
    assert torch.equal(out, mel * mask)
    assert (out != 0).sum() == 8


@pytest.mark.slow
def test_feature_extractor_on_a_tone_marks_its_band():
    feats = FeatureExtractor(DEFAULT, "librosa")(tone(440.0)[None])
    assert feats.mel.shape == feats.mask.shape == feats.pred_spec.shape == (1, 1, 128, 100)
    bands = feats.mask[0, 0].argmax(dim=0)[feats.mask[0, 0].sum(dim=0) > 0]
    assert len(bands) > 90
    expected = int(f0_to_band(np.array([[440.0]]))[0, 0])
    assert (bands == expected).float().mean() > 0.95


def test_voiced_share_is_one_for_tones_and_zero_for_drum_hits():
    rng = np.random.default_rng(0)
    hits = np.zeros(3 * 44100, np.float32)  # a decaying noise burst every 250 ms, as a hi-hat or snare
    for start in range(0, len(hits), 11025):
        hits[start : start + 2205] = 0.8 * rng.standard_normal(2205) * np.exp(-np.arange(2205) / 300)
    share = voiced_share(FeatureExtractor()(np.stack([tone(440.0), tone(220.0, amp=0.1), hits])).mask)
    assert share.shape == (3,)
    assert share[0] > 0.95 and share[1] > 0.95
    assert share[2] < 0.05


def test_voiced_share_of_a_padded_window_counts_its_audio_only():
    """A 1 s tone padded to a 3 s window has a pitch in a third of the window's frames, and in nearly all
    of the frames its audio covers."""
    padded = np.zeros(3 * 44100, np.float32)
    padded[:44100] = tone(440.0)[:44100]
    mask = FeatureExtractor()(padded[None]).mask
    assert voiced_share(mask)[0] == pytest.approx(1 / 3, abs=0.05)
    assert voiced_share(mask, np.array([1 / 3]))[0] > 0.9
    assert voiced_share(mask, np.array([1.0]))[0] == voiced_share(mask)[0]
