"""Feature extraction on tones of known pitch: the mask lights the band nearest the note, pred_spec is mel * mask."""

import numpy as np
import pytest
import torch

from instrumentd.pipeline.config import DEFAULT, TEN_MS
from instrumentd.pipeline.errors import ParameterError
from instrumentd.pipeline.features import FeatureExtractor, Features
from instrumentd.pipeline.mel import MelFrontEnd, mel_band_centres

from ..conftest import devices, tone


def nearest_band(freq: float, cfg=DEFAULT) -> int:
    return int(np.argmin(np.abs(mel_band_centres(cfg) - freq)))


@pytest.mark.parametrize("cfg", [DEFAULT, TEN_MS], ids=["100-frames", "300-frames"])
def test_a_tone_lights_the_band_nearest_its_pitch(cfg):
    feats = FeatureExtractor(cfg)(np.stack([tone(220.0, 1.5), tone(880.0, 1.5)]))
    assert len(feats) == 2
    for t in (feats.mel, feats.mask, feats.pred_spec):
        assert t.shape == (2, 1, 128, int(1.5 * 44100) // cfg.hop_length) and t.dtype == torch.float32
    for i, freq in enumerate((220.0, 880.0)):
        mask = feats.mask[i, 0, :, 4:-4]
        assert torch.all(mask.sum(0) == 1)  # one band a voiced frame
        assert torch.all(mask[nearest_band(freq, cfg)] == 1)


def test_pred_spec_is_mel_times_mask_and_silence_has_no_mask():
    feats = FeatureExtractor()(np.stack([tone(330.0, 1.0), np.zeros(44100, np.float32)]))
    torch.testing.assert_close(feats.pred_spec, feats.mel * feats.mask, rtol=0, atol=0)
    assert feats.mask[1].sum() == 0 and feats.pred_spec[1].abs().sum() == 0


def test_mel_is_the_front_ends():
    audio = tone(440.0, 1.0)
    feats = FeatureExtractor()(audio)
    torch.testing.assert_close(feats.mel[0, 0], MelFrontEnd()(torch.from_numpy(audio))[0], rtol=0, atol=0)


def test_an_engine_is_taken_by_name_or_as_a_function():
    calls = []

    def octave_up(audio, cfg):
        calls.append(audio.shape)
        return np.full((audio.shape[0], cfg.n_frames), 440.0, np.float32)

    feats = FeatureExtractor(pitch_engine=octave_up)(tone(220.0))
    assert calls == [(1, DEFAULT.clip_samples)]
    assert torch.all(feats.mask[0, 0, nearest_band(440.0)] == 1)  # the engine's answer, not the tone's


@pytest.mark.parametrize("device", devices())
def test_tensor_input_stays_on_its_device_and_features_move(device):
    feats = FeatureExtractor(device=device)(torch.from_numpy(tone(220.0, 1.0)).to(device))
    assert feats.mel.device.type == feats.mask.device.type == device
    moved = feats.to("cpu")
    assert isinstance(moved, Features) and moved.mel.device.type == "cpu"


def test_too_short_audio_is_named():
    with pytest.raises(ParameterError, match="2205 samples.*got 100"):
        FeatureExtractor()(np.zeros(100, np.float32))
