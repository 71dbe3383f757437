"""Training from a stem bank: a real (tiny) run on the CPU, its checkpoint, and the command."""

import dataclasses

import pytest
import torch

from instrumentd.clients.cli import main
from instrumentd.model.recognizer import Recognizer
from instrumentd.pipeline.config import DEFAULT
from instrumentd.pipeline.errors import ParameterError
from instrumentd.training.stem_bank import load_bank
from instrumentd.training.train_audio import AudioTrainConfig, save_audio_checkpoint, train_from_audio

from .conftest import SR

TINY = AudioTrainConfig(epochs=2, clips_per_epoch=12, validation_clips=8, chunk=8, batch_size=8, amp=False)


def test_a_tiny_run_writes_a_checkpoint_with_its_decision(stem_bank, tmp_path):
    bank = load_bank(stem_bank, SR, room_count=2)
    epochs = []
    result, decision, figures = train_from_audio(bank, TINY, on_epoch=epochs.append)
    assert [e.epoch for e in epochs] == [1, 2] and result.best_epoch in (1, 2)
    assert all(e.train_loss > 0 and 0 <= e.val_accuracy <= 1 for e in epochs)
    assert 0 < decision.min_confidence < 1 and figures["music_named"] >= TINY.keep_music - 0.1
    meta = save_audio_checkpoint(result, decision, figures, bank, TINY, DEFAULT, tmp_path / "m.safetensors", "tones")
    assert meta["decision"]["min_confidence"] == decision.min_confidence
    assert meta["training"]["data"]["stems"]["pred"] == 22 and meta["training"]["config"]["clips_per_epoch"] == 12
    rec = Recognizer.from_checkpoint(tmp_path / "m.safetensors", "cpu")
    assert rec.decision == decision and rec.trained and 0 <= decision.min_voiced <= 1
    # fine-tuning starts from the checkpoint's weights: with a vanishing rate it ends where it began
    tuned, _, _ = train_from_audio(bank, dataclasses.replace(TINY, epochs=1, lr=1e-12,
                                                             init=str(tmp_path / "m.safetensors")))
    start = rec.model.state_dict()
    assert all(torch.allclose(v.float(), start[k].float(), atol=1e-5) for k, v in tuned.model.state_dict().items()
               if v.is_floating_point() and "running" not in k)


def test_mask_drop_blanks_the_masks_of_every_training_batch(stem_bank, monkeypatch):
    """``mask_drop`` reaches the training loop: each batch's masks go through ``blank_masks`` (the real
    one, watched) with the configured share before the step, and validation never does."""
    from instrumentd.training import augment, train_audio

    calls = []

    def watched(mask, share):
        calls.append((mask.shape[0], share))
        return augment.blank_masks(mask, share)

    monkeypatch.setattr(train_audio, "blank_masks", watched)
    bank = load_bank(stem_bank, SR, room_count=2)
    train_from_audio(bank, dataclasses.replace(TINY, epochs=1, mask_drop=0.5))
    assert calls == [(8, 0.5), (4, 0.5)]  # 12 clips in batches of 8
    calls.clear()
    train_from_audio(bank, dataclasses.replace(TINY, epochs=1))
    assert calls == []


def test_config_is_checked():
    with pytest.raises(ParameterError, match="clips per epoch"):
        dataclasses.replace(TINY, clips_per_epoch=0)
    with pytest.raises(ParameterError, match="keep_music"):
        dataclasses.replace(TINY, keep_music=1.5)
    with pytest.raises(ParameterError, match="keep_voiced"):
        dataclasses.replace(TINY, keep_voiced=0)
    with pytest.raises(ParameterError, match="mask drop"):
        dataclasses.replace(TINY, mask_drop=1.0)


def test_train_command_takes_a_stem_bank(stem_bank, tmp_path, capsys):
    out = tmp_path / "cli.safetensors"
    code = main(["train", str(stem_bank), "--out", str(out), "--epochs", "1", "--clips-per-epoch", "8",
                 "--validation-clips", "8", "--batch-size", "8", "--device", "cpu", "--exclude-banks", "b",
                 "--mask-drop", "0.5"])
    assert code == 0
    text = capsys.readouterr().out
    assert "no-instrument threshold" in text and out.is_file()
    assert (tmp_path / "cli.history.json").is_file() and (tmp_path / "cli.curves.png").is_file()
    meta = Recognizer.from_checkpoint(out, "cpu").meta
    assert meta["training"]["data"]["excluded_banks"] == ["b"]
    assert meta["training"]["data"]["pred_stems_per_bank"] == {"a": 11}
    assert meta["training"]["config"]["mask_drop"] == 0.5
