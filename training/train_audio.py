"""Training from audio: every epoch mixes new clips from a stem bank on the device
(training/audio_augment.py), computes their features there (mel + pYIN mask, the pipeline's own
front end) and trains the paper's network on them. Not the paper's protocol, which trains on fixed
features (training/train.py); the network, its features and the optimizer's settings are the same.

Clips are made a chunk at a time (:attr:`AudioTrainConfig.chunk` clips: one feature pass fills
the GPU), then cut into batches of ``batch_size`` steps, replayed from one CUDA graph on CUDA
(training/graphed.py). Validation clips are mixed once, with a fixed seed, from stems held out of
training, with the same effects; the epoch with the best validation accuracy on music clips is kept,
and the decision's confidence threshold (model/decision.py) is chosen on the same clips.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from instrumentd.model import checkpoint
from instrumentd.model.classes import CLASSES
from instrumentd.model.decision import Decision, choose_minimum, window_reasons
from instrumentd.model.networks import build
from instrumentd.pipeline.config import DEFAULT, FeatureConfig
from instrumentd.pipeline.errors import ParameterError
from instrumentd.pipeline.features import FeatureExtractor
from instrumentd.pipeline.mask import voiced_share

from .audio_augment import MixedBatch, MixRecipe, mix_batch
from .augment import blank_masks, spec_augment
from .dataset import FeatureSet, mask_to_band
from .graphed import TrainStep, autocast
from .stem_bank import StemBank, split_stems
from .train import EVAL_BATCH, EpochStats, TrainResult, initial_weights


@dataclasses.dataclass(frozen=True)
class AudioTrainConfig:
    """Everything that decides a run from audio (stored in the checkpoint's metadata)."""

    variant: str = "cross"
    epochs: int = 100
    clips_per_epoch: int = 6600
    validation_clips: int = 1100
    batch_size: int = 16
    lr: float = 1e-4
    mask_noise: float = 0.1
    mask_drop: float = 0.0  # share of training clips whose pitch mask is blanked (the mel alone must name them)
    spec_augment: bool = True
    seed: int = 0
    amp: bool = True
    chunk: int = 1024  # clips mixed and featurised at once
    val_fraction: float = 0.1  # share of each class's stems held out for validation
    keep_music: float = 0.97  # share of validation music windows the confidence threshold must keep
    keep_voiced: float = 0.99  # share of validation music windows the voiced-share threshold must keep
    max_seconds: float = 0.0  # stop after the first epoch that ends past this much training time (0: never)
    init: str = ""  # checkpoint whose weights start the run (fine-tuning); "" = the seed's random weights
    recipe: MixRecipe = MixRecipe()

    def __post_init__(self) -> None:
        for name in ("epochs", "clips_per_epoch", "validation_clips", "batch_size", "chunk"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ParameterError(f"learning rate must be positive, got {self.lr}")
        if not 0 <= self.mask_drop < 1:
            raise ParameterError(f"mask drop must be in [0, 1), got {self.mask_drop}")
        if not 0 < self.val_fraction < 1:
            raise ParameterError(f"validation fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("keep_music", "keep_voiced"):
            if not 0 < getattr(self, name) <= 1:
                raise ParameterError(f"{name} must be in (0, 1], got {getattr(self, name)}")


@dataclasses.dataclass
class ValidationSet:
    """Fixed validation windows: features on the device and what each clip is."""

    mel: torch.Tensor  # [n, 1, n_mels, frames]
    mask: torch.Tensor  # [n, 1, n_mels, frames]
    target: torch.Tensor  # [n, n_classes]
    label: torch.Tensor  # [n], -1 for non-music


def featurise(batch: MixedBatch, extractor: FeatureExtractor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mel, mask)``, each ``float32 [B, 1, n_mels, frames]``, of the batch's audio."""
    features = extractor(batch.audio)
    return features.mel, features.mask


def make_validation(bank: StemBank, pools: dict[str, torch.Tensor], cfg: AudioTrainConfig,
                    extractor: FeatureExtractor, length: int) -> ValidationSet:
    """``cfg.validation_clips`` clips mixed with a fixed seed from the held-out stems."""
    gen = torch.Generator(device=bank.label.device)
    gen.manual_seed(cfg.seed * 7919 + 1)
    parts = []
    for start in range(0, cfg.validation_clips, cfg.chunk):
        batch = mix_batch(bank, pools, min(cfg.chunk, cfg.validation_clips - start), length, cfg.recipe, gen)
        parts.append((*featurise(batch, extractor), batch.target, batch.label))
    return ValidationSet(*(torch.cat(p) for p in zip(*parts)))


@torch.no_grad()
def validation_logits(model: nn.Module, val: ValidationSet, amp: bool) -> torch.Tensor:
    """``float32 [n, n_classes]`` logits of every validation window (eval mode)."""
    model.eval()
    out = []
    for i in range(0, len(val.label), EVAL_BATCH):
        with autocast(val.mel.device, amp):
            out.append(model(val.mel[i : i + EVAL_BATCH], val.mask[i : i + EVAL_BATCH]).float())
    return torch.cat(out)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits [B, C]`` against probability targets ``[B, C]``."""
    return nn.functional.cross_entropy(logits, target)


def choose_decision(model: nn.Module, val: ValidationSet, cfg: AudioTrainConfig) -> tuple[Decision, dict[str, float]]:
    """The decision's thresholds chosen on validation windows (model/decision.py): the lowest top
    probability and voiced share that keep ``cfg.keep_music`` and ``cfg.keep_voiced`` of the music
    windows; returns it with its figures (share of music windows named, of non-music rejected)."""
    probs = torch.softmax(validation_logits(model, val, cfg.amp), dim=1).cpu().numpy()
    top = probs.max(axis=1)
    is_music = (val.label >= 0).cpu().numpy()
    voiced = voiced_share(val.mask)
    decision = Decision(min_confidence=choose_minimum(top[is_music], cfg.keep_music),
                        min_voiced=choose_minimum(voiced[is_music], cfg.keep_voiced))
    # the daemon's own rule; validation clips are audible by construction, so no level test
    reasons = window_reasons(probs, np.zeros(len(probs)), decision, voiced=voiced)
    named = np.array([r is None for r in reasons])
    figures = {
        "music_named": float(named[is_music].mean()),
        "none_rejected": float((~named[~is_music]).mean()) if (~is_music).any() else 0.0,
    }
    return decision, figures


def calibrate(model: nn.Module, bank: StemBank, cfg: AudioTrainConfig,
              features: FeatureConfig = DEFAULT) -> tuple[Decision, dict[str, float]]:
    """Choose a trained ``model``'s decision again (:func:`choose_decision`) on ``cfg.validation_clips``
    clips mixed from the stems ``cfg.seed`` holds out of ``bank``, as training would; the weights stay."""
    _, val_pools = split_stems(bank, cfg.val_fraction, cfg.seed)
    extractor = FeatureExtractor(features, "torch", bank.label.device)
    val = make_validation(bank, val_pools, cfg, extractor, features.clip_samples)
    return choose_decision(model.to(bank.label.device), val, cfg)


def train_from_audio(bank: StemBank, cfg: AudioTrainConfig = AudioTrainConfig(),
                     features: FeatureConfig = DEFAULT,
                     on_epoch: Callable[[EpochStats], None] | None = None,
                     cuda_graph: bool = True) -> tuple[TrainResult, Decision, dict[str, float]]:
    """Train ``cfg.variant`` on clips mixed from ``bank`` (on its device).

    Returns the best model (eval mode), the decision chosen on validation clips, and that
    decision's validation figures (share of music windows named, of non-music windows rejected).
    """
    device = bank.label.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    length = features.clip_samples
    if bank.samples < length:
        raise ParameterError(f"stems of {bank.samples / bank.sample_rate:.2f} s are shorter than a "
                             f"{features.clip_seconds} s clip")
    train_pools, val_pools = split_stems(bank, cfg.val_fraction, cfg.seed)
    extractor = FeatureExtractor(features, "torch", device)
    val = make_validation(bank, val_pools, cfg, extractor, length)
    music = val.label >= 0

    torch.manual_seed(cfg.seed)
    model = build(cfg.variant, len(CLASSES))
    if cfg.init:
        model.load_state_dict(initial_weights(cfg.init, cfg.variant, features))
    model = model.to(device)
    graphed = cuda_graph and device.type == "cuda"
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr,
                                 **({"fused": True, "capturable": graphed} if device.type == "cuda" else {}))
    step = TrainStep(model, optimizer, soft_cross_entropy, cfg.amp, cfg.batch_size if graphed else 0)
    gen = torch.Generator(device=device)
    history: list[EpochStats] = []
    best_epoch, best_key = 0, (-1.0, 0.0)
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        gen.manual_seed(cfg.seed * 100_003 + epoch)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        for start in range(0, cfg.clips_per_epoch, cfg.chunk):
            batch = mix_batch(bank, train_pools, min(cfg.chunk, cfg.clips_per_epoch - start), length, cfg.recipe, gen)
            mel, mask = featurise(batch, extractor)
            model.train()
            for s in range(math.ceil(len(mel) / cfg.batch_size)):
                sl = slice(s * cfg.batch_size, (s + 1) * cfg.batch_size)
                m, k = mel[sl], mask[sl]
                if cfg.spec_augment:
                    m, k = spec_augment(m, k)
                if cfg.mask_drop > 0:
                    k = blank_masks(k, cfg.mask_drop)
                if cfg.mask_noise > 0:
                    k = k + cfg.mask_noise * torch.randn_like(k)
                loss, logits = step(m, k, batch.target[sl])
                n = m.shape[0]
                loss_sum += loss * n
                correct += ((logits.argmax(1) == batch.label[sl]) & (batch.label[sl] >= 0)).sum()
                seen += n
        logits = validation_logits(model, val, cfg.amp)
        val_loss = float(soft_cross_entropy(logits, val.target))
        val_acc = float((logits.argmax(1) == val.label)[music].float().mean())
        stats = EpochStats(epoch, float(loss_sum) / seen, float(correct) / seen, val_loss, val_acc,
                           time.perf_counter() - t0)
        history.append(stats)
        if (val_acc, -val_loss) > best_key:
            best_epoch, best_key = epoch, (val_acc, -val_loss)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if on_epoch:
            on_epoch(stats)
        if cfg.max_seconds and sum(h.seconds for h in history) >= cfg.max_seconds:
            break
    model.load_state_dict(best_state)
    decision, figures = choose_decision(model, val, cfg)
    split = {"train_stems": {r: len(v) for r, v in train_pools.items()},
             "validation_stems": {r: len(v) for r, v in val_pools.items()}}
    return TrainResult(model, best_epoch, history, split), decision, figures


def save_audio_checkpoint(result: TrainResult, decision: Decision, figures: dict[str, float], bank: StemBank,
                          cfg: AudioTrainConfig, features: FeatureConfig, path: str | Path, source: str = "",
                          excluded: tuple[str, ...] = ()) -> dict[str, Any]:
    """Write the best model with its data, recipe, decision and validation metrics in the metadata."""
    best = result.best
    banks: dict[str, int] = {}
    for b in bank.banks["pred"]:
        banks[b] = banks.get(b, 0) + 1
    counts = np.bincount(bank.label.cpu().numpy(), minlength=len(CLASSES))
    return checkpoint.save(
        path, result.model, cfg.variant, features, CLASSES, trained=True,
        training={
            "data": {"source": source, "kind": "stem bank, mixed on the fly", "stems": bank.counts(),
                     "pred_stems_per_class": {c: int(n) for c, n in zip(CLASSES, counts)},
                     "pred_stems_per_bank": banks, "excluded_banks": list(excluded),
                     "none_kinds": sorted(set(bank.kinds)), **result.split},
            "config": dataclasses.asdict(cfg),
        },
        decision=decision.to_dict(),
        metrics={
            "best_epoch": result.best_epoch, "epochs": len(result.history),
            "val_accuracy": round(best.val_accuracy, 4), "val_loss": round(best.val_loss, 4),
            "train_accuracy": round(best.train_accuracy, 4), "train_loss": round(best.train_loss, 4),
            "train_seconds": round(sum(h.seconds for h in result.history), 1),
            **{f"val_{k}": round(v, 4) for k, v in figures.items()},
        },
    )


def fixed_feature_sets(bank: StemBank, train_clips: int, test_clips: int, seed: int = 0,
                       features: FeatureConfig = DEFAULT, recipe: MixRecipe = MixRecipe(),
                       chunk: int = 1024) -> tuple[FeatureSet, FeatureSet]:
    """Clips mixed once from the bank (the paper's protocol then trains on them as on prepared features).

    Training clips come from the training stems, one class each, no non-music; test clips from the
    held-out stems, a share of them with a second predominant class (multi-label, as IRMAS's test
    clips). Each clip is one window; both sets are on the bank's device.
    """
    train_pools, test_pools = split_stems(bank, 0.1, seed)
    extractor = FeatureExtractor(features, "torch", bank.label.device)
    gen = torch.Generator(device=bank.label.device)
    gen.manual_seed(seed * 7919 + 2)
    length = features.clip_samples

    def mixed(pools: dict[str, torch.Tensor], n: int, rec: MixRecipe, split: str) -> FeatureSet:
        mels, bands, labels = [], [], []
        solo = pools["pred"]
        by_class = [solo[bank.label[solo] == c] for c in range(len(CLASSES))]
        for start in range(0, n, chunk):
            turn = [(start + i) % len(CLASSES) for i in range(min(chunk, n - start))]
            first = torch.stack([by_class[c][torch.randint(0, len(by_class[c]), (), generator=gen,
                                                           device=solo.device)] for c in turn])
            batch = mix_batch(bank, pools, len(turn), length, rec, gen, first)
            mel, mask = featurise(batch, extractor)
            mels.append(mel)
            bands.append(mask_to_band(mask[:, 0], "mixed clips"))
            labels.append((batch.target > 0.05).long())
        mel, band, label = torch.cat(mels), torch.cat(bands), torch.cat(labels)
        names = [f"mixed-{split}-{i:05d}" for i in range(n)]
        return FeatureSet(mel, band, torch.arange(n, device=mel.device), label, names, [""] * n,
                          {"split": split, "sample_rate": features.sample_rate, "hop_length": features.hop_length,
                           "pitch_engine": "torch", "mask": "pyin", "source": "stem bank, mixed once"})

    train = mixed(train_pools, train_clips, dataclasses.replace(recipe, none_share=0.0, second_share=0.0), "train")
    test = mixed(test_pools, test_clips, dataclasses.replace(recipe, none_share=0.0), "test")
    return train, test
