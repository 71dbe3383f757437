"""Recognizer: a checkpoint loaded for inference; probabilities, batching, embeddings, whole clips, devices."""

import numpy as np
import pytest
import torch

from instrumentd.model.checkpoint import save
from instrumentd.model.classes import CLASSES
from instrumentd.model.networks import build
from instrumentd.model.recognizer import CLIP_HOP_SECONDS, DEFAULT_CHECKPOINT, Recognizer, resolve_device
from instrumentd.pipeline import DEFAULT, TEN_MS, FeatureExtractor
from instrumentd.pipeline.errors import ParameterError
from instrumentd.pipeline.features import Features

from ..conftest import tone


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.from_checkpoint(None, "cpu", batch_size=3)


def random_features(n: int, frames: int = 100) -> Features:
    mel = torch.randn(n, 1, 128, frames, generator=torch.Generator().manual_seed(n))
    mask = (mel > 1.5).float()
    return Features(mel, mask, mel * mask)


def test_the_default_checkpoint_is_bundled_and_loads_in_eval_mode(recognizer):
    assert DEFAULT_CHECKPOINT.is_file()
    assert recognizer.classes == CLASSES and recognizer.features == DEFAULT
    assert not recognizer.model.training and recognizer.device == torch.device("cpu")
    assert recognizer.id.startswith("cross-")


def test_probabilities_sum_to_one_and_batches_change_nothing(recognizer):
    feats = random_features(7)
    probs = recognizer.predict(feats)  # batches of 3, 3 and 1
    assert probs.shape == (7, 11) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    one_pass = Recognizer(recognizer.model, recognizer.meta, recognizer.device, batch_size=64).predict(feats)
    np.testing.assert_allclose(probs, one_pass, atol=1e-5)
    assert recognizer.predict(random_features(0)).shape == (0, 11)


def test_embeddings_are_the_heads_256_inputs(recognizer):
    assert recognizer.embed(random_features(4)).shape == (4, 256)


def test_a_whole_clip_is_cut_every_1_5_s_and_silence_names_nothing(recognizer):
    extractor = FeatureExtractor(recognizer.features)
    result = recognizer.classify_clip(np.zeros(6 * 44100, np.float32), extractor)
    assert CLIP_HOP_SECONDS == 1.5
    np.testing.assert_allclose(result.window_starts, [0.0, 1.5, 3.0])
    assert result.window_probs.shape == (3, 11) and result.window_reasons == ["silence"] * 3
    assert result.labels == [] and result.none == "silence"


def test_a_loud_tone_is_heard_at_its_level(recognizer):
    result = recognizer.classify_clip(tone(440.0, 3.0, amp=0.5), FeatureExtractor(recognizer.features))
    assert result.window_levels == pytest.approx([-9.03], abs=0.05)  # a sine of peak 0.5: RMS 0.354


def test_the_checkpoints_metadata_decides_the_features_and_training_state(tmp_path):
    path = tmp_path / "ten-ms.safetensors"
    torch.manual_seed(0)
    save(path, build("mel").eval(), "mel", TEN_MS, trained=False)
    rec = Recognizer.from_checkpoint(path, "cpu")
    assert rec.features == TEN_MS and not rec.trained and rec.id.startswith("mel-")
    assert rec.predict(random_features(2, frames=300)).shape == (2, 11)


@pytest.mark.parametrize("device, expected", [("cpu", "cpu"), (torch.device("cpu"), "cpu")])
def test_devices_resolve_by_name(device, expected):
    assert resolve_device(device) == torch.device(expected)


def test_auto_is_the_gpu_when_there_is_one():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("device, fragment", [
    ("tpu", "got 'tpu'"), ("meta", "got 'meta'"), ("cuda:99", "'cuda:99' asked for")])
def test_bad_devices_are_named(device, fragment):
    with pytest.raises(ParameterError, match=fragment):
        resolve_device(device)
