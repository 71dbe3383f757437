"""Training with the paper's protocol: Adam (lr 1e-4), batch 16, 100 epochs, cross-entropy, a
stratified 80/20 train/validation split, Gaussian noise on the pitch mask during training, and the
checkpoint of the epoch with the best validation accuracy.

The whole feature set lives on the device as tensors (mel in dB, mask as one band per frame);
each step gathers its batch by index, so no data loader runs. On CUDA the forward pass runs in
bfloat16 autocast and, with Adam, full batches replay one captured CUDA graph (training/graphed.py).
A state file next to the checkpoint (``CKPT.state.pt``) is written after every
epoch, so ``resume=True`` continues an interrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from instrumentd.model import checkpoint
from instrumentd.model.classes import CLASSES
from instrumentd.model.networks import build
from instrumentd.pipeline.config import DEFAULT, FeatureConfig
from instrumentd.pipeline.errors import InstrumentdError, ParameterError

from .augment import mix_pairs, spec_augment, timbre_eq
from .dataset import FeatureSet
from .graphed import TrainStep, autocast

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "radam": torch.optim.RAdam,
}
EVAL_BATCH = 512  # windows per forward pass when validating


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (stored in the checkpoint's metadata)."""

    variant: str = "cross"
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-4
    optimizer: str = "adam"
    val_fraction: float = 0.2
    mask_noise: float = 0.1  # std of the Gaussian noise added to the binary mask while training
    seed: int = 0
    amp: bool = True  # bfloat16 autocast, on CUDA only
    augment: bool = False  # SpecAugment-style time shift and stripes (training/augment.py); not the paper's
    timbre: bool = False  # a random smooth equaliser per clip on the mel (training/augment.py); not the paper's
    mix: float = 0.0  # share of each batch mixed with a clip of another class (training/augment.py); not the paper's
    init: str = ""  # checkpoint whose weights start the run (fine-tuning); "" = the seed's random weights

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ParameterError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ParameterError(f"batch size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ParameterError(f"learning rate must be positive, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ParameterError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if not 0 < self.val_fraction < 1:
            raise ParameterError(f"validation fraction must be in (0, 1), got {self.val_fraction}")
        if not 0 <= self.mix <= 1:
            raise ParameterError(f"mix rate must be in [0, 1], got {self.mix}")
        if self.mask_noise < 0:
            raise ParameterError(f"mask noise must be >= 0, got {self.mask_noise}")


@dataclasses.dataclass
class EpochStats:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclasses.dataclass
class TrainResult:
    """The best model (eval mode, on the training device), its epoch and the per-epoch history."""

    model: nn.Module
    best_epoch: int
    history: list[EpochStats]
    split: dict[str, list[int]]

    @property
    def best(self) -> EpochStats:
        return next(h for h in self.history if h.epoch == self.best_epoch)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, validation)`` with each class in the same proportion in both (scikit-learn)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    counts = np.bincount(labels)
    if (counts[counts > 0] < 2).any():
        rare = [CLASSES[i] for i in np.flatnonzero((counts > 0) & (counts < 2))]
        raise ParameterError(f"a stratified split needs at least 2 clips per class; {', '.join(rare)} has 1")
    n_val = max(int(round(val_fraction * len(idx))), int((counts > 0).sum()))
    if n_val >= len(idx):
        raise ParameterError(f"{len(idx)} clips are too few for a {val_fraction:.0%} validation split")
    train, val = train_test_split(idx, test_size=n_val, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(val)


def feature_config(features: FeatureSet) -> FeatureConfig:
    """The feature configuration the features were computed with (hop and rate from their metadata)."""
    return dataclasses.replace(DEFAULT, sample_rate=int(features.meta.get("sample_rate", DEFAULT.sample_rate)),
                               hop_length=int(features.meta.get("hop_length", DEFAULT.hop_length)))


@torch.no_grad()
def evaluate_windows(model: nn.Module, features: FeatureSet, index: torch.Tensor, amp: bool) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on the windows at ``index`` (eval mode)."""
    model.eval()
    device = features.mel.device
    labels = features.label
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    for i in range(0, len(index), EVAL_BATCH):
        idx = index[i : i + EVAL_BATCH]
        with autocast(device, amp):
            logits = model(features.mel[idx], features.mask(idx)).float()
        loss_sum += nn.functional.cross_entropy(logits, labels[idx], reduction="sum")
        correct += (logits.argmax(1) == labels[idx]).sum()
    n = max(1, len(index))
    return float(loss_sum) / n, float(correct) / n


class _State:
    """What a resumed run needs: model, optimizer, history, best weights, RNG, split."""

    def __init__(self, path: Path):
        self.path = path

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer, history: list[EpochStats], best_epoch: int,
             best_state: dict[str, torch.Tensor], split: dict[str, list[int]], cfg: TrainConfig, fingerprint: str) -> None:
        tmp = self.path.with_name(self.path.name + ".part")
        torch.save({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "history": [dataclasses.asdict(h) for h in history], "best_epoch": best_epoch, "best_state": best_state,
            "split": split, "config": dataclasses.asdict(cfg), "fingerprint": fingerprint,
            "rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }, tmp)
        tmp.replace(self.path)

    def load(self, cfg: TrainConfig, fingerprint: str) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state["config"] != dataclasses.asdict(cfg) or state["fingerprint"] != fingerprint:
            raise InstrumentdError(f"{self.path}: saved state is of another run (config or data differ); "
                                   "delete it or train without --resume")
        return state


def fingerprint(features: FeatureSet) -> str:
    """Identifies a training set: clip count and a hash of the clip names and labels."""
    import hashlib

    h = hashlib.sha256("\n".join(features.names).encode())
    h.update(features.labels.cpu().numpy().tobytes())
    return f"{features.n_clips}-{h.hexdigest()[:16]}"


def initial_weights(path: str, variant: str, features: FeatureConfig) -> dict[str, torch.Tensor]:
    """The weights of checkpoint ``path`` (``--init``), which must be of ``variant`` and ``features``."""
    model, meta = checkpoint.load_checkpoint(path, expect_features=features)
    if meta["variant"] != variant:
        raise ParameterError(f"--init {path}: a {meta['variant']!r} checkpoint cannot start a {variant!r} run")
    return model.state_dict()


def train(features: FeatureSet, cfg: TrainConfig = TrainConfig(), state_path: str | Path | None = None,
          resume: bool = False, on_epoch: Callable[[EpochStats], None] | None = None,
          on_step: Callable[[], None] | None = None, cuda_graph: bool = True) -> TrainResult:
    """Train ``cfg.variant`` on ``features`` (already on the device) and return the best model.

    Parameters
    ----------
    features : a training set, one window per clip, on the device to train on
    cfg : the protocol
    state_path : where to keep the resumable state (None: no state file)
    resume : continue from ``state_path`` when it exists
    on_epoch : called after each epoch with its statistics
    on_step : called after each optimizer step
    cuda_graph : on CUDA with Adam, replay full batches from a captured graph (training/graphed.py)
    """
    device = features.mel.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every batch has the same shape
    labels_np = features.label.cpu().numpy()
    fp = fingerprint(features)
    train_idx, val_idx = stratified_split(labels_np, cfg.val_fraction, cfg.seed)
    split = {"train": train_idx.tolist(), "validation": val_idx.tolist()}
    torch.manual_seed(cfg.seed)
    model = build(cfg.variant, len(CLASSES)).to(device)
    if cfg.init:
        model.load_state_dict(initial_weights(cfg.init, cfg.variant, feature_config(features)))
    opt_kwargs: dict[str, Any] = {"lr": cfg.lr}
    graphed = cuda_graph and device.type == "cuda" and cfg.optimizer == "adam"
    if device.type == "cuda" and cfg.optimizer == "adam":
        opt_kwargs["fused"] = True  # one kernel for the whole update: steps of batch 16 are launch-bound
        opt_kwargs["capturable"] = graphed  # step counters on the device, so a graph can replay the update
    optimizer = OPTIMIZERS[cfg.optimizer](model.parameters(), **opt_kwargs)
    history: list[EpochStats] = []
    best_epoch, best_state = 0, {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = _State(Path(state_path)) if state_path else None
    if state and resume:
        saved = state.load(cfg, fp)
        if saved:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            history = [EpochStats(**h) for h in saved["history"]]
            best_epoch = saved["best_epoch"]
            best_state = {k: v.to(device) for k, v in saved["best_state"].items()}
            torch.set_rng_state(saved["rng"])
            if saved["cuda_rng"] and device.type == "cuda":
                torch.cuda.set_rng_state_all(saved["cuda_rng"])
    generator = torch.Generator(device=device)
    train_t = torch.as_tensor(train_idx, device=device)
    val_t = torch.as_tensor(val_idx, device=device)
    labels = features.label
    loss_fn = nn.CrossEntropyLoss()
    step = TrainStep(model, optimizer, loss_fn, cfg.amp, cfg.batch_size if graphed else 0)
    steps = math.ceil(len(train_t) / cfg.batch_size)
    for epoch in range(len(history) + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        generator.manual_seed(cfg.seed * 100_003 + epoch)
        order = train_t[torch.randperm(len(train_t), device=device, generator=generator)]
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for s in range(steps):
            idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            mel, mask = features.mel[idx], features.mask(idx)
            target = labels[idx]  # class indices, or probabilities once mixed
            if cfg.mix > 0:
                mel, target = mix_pairs(mel, nn.functional.one_hot(target, len(CLASSES)).float(), cfg.mix)
            if cfg.timbre:
                mel = timbre_eq(mel)
            if cfg.augment:
                mel, mask = spec_augment(mel, mask)
            if cfg.mask_noise > 0:
                mask = mask + cfg.mask_noise * torch.randn_like(mask)
            loss, logits = step(mel, mask, target)
            loss_sum += loss * len(idx)
            correct += (logits.argmax(1) == labels[idx]).sum()
            if on_step:
                on_step()
        val_loss, val_acc = evaluate_windows(model, features, val_t, cfg.amp)
        stats = EpochStats(epoch, float(loss_sum) / len(train_t), float(correct) / len(train_t), val_loss, val_acc,
                           time.perf_counter() - t0)
        history.append(stats)
        best = next((h for h in history if h.epoch == best_epoch), None)
        if best is None or (val_acc, -val_loss) > (best.val_accuracy, -best.val_loss):
            best_epoch = epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if state:
            state.save(model, optimizer, history, best_epoch, best_state, split, cfg, fp)
        if on_epoch:
            on_epoch(stats)
    model.load_state_dict(best_state)
    return TrainResult(model.eval(), best_epoch, history, split)


def save_checkpoint(result: TrainResult, features: FeatureSet, cfg: TrainConfig, path: str | Path,
                    source: str = "") -> dict[str, Any]:
    """Write the best model with its training data, protocol and validation metrics in the metadata."""
    fonts: dict[str, int] = {}
    for s in features.soundfonts:
        fonts[s or "recorded"] = fonts.get(s or "recorded", 0) + 1
    best = result.best
    return checkpoint.save(
        path, result.model, cfg.variant, feature_config(features), CLASSES, trained=True,
        training={
            "data": {
                "source": source,
                "clips": features.n_clips,
                "clips_per_class": {c: int(n) for c, n in zip(CLASSES, features.labels.sum(0).tolist())},
                "soundfonts": fonts,
                "pitch_engine": features.meta.get("pitch_engine", ""),
                "mask": features.meta.get("mask", "pyin"),
                "train_clips": len(result.split["train"]),
                "validation_clips": len(result.split["validation"]),
            },
            "config": dataclasses.asdict(cfg),
        },
        metrics={
            "best_epoch": result.best_epoch,
            "epochs": len(result.history),
            "val_accuracy": round(best.val_accuracy, 4),
            "val_loss": round(best.val_loss, 4),
            "train_accuracy": round(best.train_accuracy, 4),
            "train_loss": round(best.train_loss, 4),
            "train_seconds": round(sum(h.seconds for h in result.history), 1),
        },
    )


def write_history(history: list[EpochStats], path: str | Path) -> None:
    Path(path).write_text(json.dumps([dataclasses.asdict(h) for h in history], indent=1))


def plot_curves(history: list[EpochStats], path: str | Path, title: str = "") -> None:
    """Loss and accuracy per epoch, training and validation, side by side (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h.epoch for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h.train_loss for h in history], label="training")
    ax_loss.plot(epochs, [h.val_loss for h in history], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.plot(epochs, [h.train_accuracy for h in history], label="training")
    ax_acc.plot(epochs, [h.val_accuracy for h in history], label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare_optimizers(features: FeatureSet, names: list[str], cfg: TrainConfig,
                       on_epoch: Callable[[str, EpochStats], None] | None = None) -> dict[str, list[EpochStats]]:
    """Figure 5: the same model, split and seed trained with each optimizer for ``cfg.epochs`` epochs."""
    out = {}
    for name in names:
        run_cfg = dataclasses.replace(cfg, optimizer=name)
        out[name] = train(features, run_cfg, on_epoch=(lambda s, n=name: on_epoch(n, s)) if on_epoch else None).history
    return out


def plot_optimizers(histories: dict[str, list[EpochStats]], path: str | Path) -> None:
    """Training loss per epoch, one line per optimizer (Figure 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, hist in histories.items():
        ax.plot([h.epoch for h in hist], [h.train_loss for h in hist], marker="o", label=name)
    ax.set(xlabel="epoch", ylabel="training loss (cross-entropy)", title="optimizers, first epochs")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
