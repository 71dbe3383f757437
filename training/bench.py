"""``instrumentd bench prepare`` and ``instrumentd bench train``.

``prepare``: 3 s clips per second through the feature extractor (mel, pYIN, mask), audio already
decoded, at several batch sizes; the figure that decides how long ``instrumentd prepare`` takes on
IRMAS's 6,705 training clips. ``train``: seconds per epoch and samples per second of the paper's
protocol (batch 16, Adam, mask noise, bfloat16 autocast on CUDA) on random features held on the device,
and the time 100 epochs over 6,705 clips would take.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from instrumentd.model.bench import time_call
from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.config import DEFAULT
from instrumentd.pipeline.features import FeatureExtractor
from instrumentd.pipeline.pitch import DEFAULT_ENGINE

from .dataset import FeatureSet
from .train import TrainConfig, train

IRMAS_TRAINING_CLIPS = 6705


def harmonic_clips(n: int, seconds: float = 3.0, sr: int = 44100, seed: int = 0) -> np.ndarray:
    """``float32 [n, seconds * sr]``: notes of 5 harmonics with vibrato, a new pitch every 0.5 s, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    out = np.empty((n, len(t)), np.float32)
    for i in range(n):
        f0 = np.repeat(110.0 * 2 ** (rng.integers(0, 36, int(np.ceil(seconds / 0.5))) / 12), int(0.5 * sr))[: len(t)]
        f0 = f0 * (1 + 0.005 * np.sin(2 * np.pi * 5.5 * t))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        x = sum(np.sin(k * phase) / k for k in range(1, 6)) + 0.05 * rng.standard_normal(len(t))
        out[i] = 0.3 * x / np.abs(x).max()
    return out


def prepare(device: torch.device, quick: bool, args: argparse.Namespace):
    """Feature extraction throughput, clips per second, by batch size."""
    from instrumentd.clients.bench import BenchResult

    extractor = FeatureExtractor(DEFAULT, DEFAULT_ENGINE, device)
    batches = (4, 16) if quick else ((16, 64) if device.type == "cpu" else (64, 256, 512))
    clips = harmonic_clips(max(batches))
    rows = []
    for b in batches:
        sec = time_call(lambda: extractor(clips[:b]), device, 0.5 if quick else 3.0, warmup=1)
        rows.append({"pitch engine": DEFAULT_ENGINE, "batch": b, "s_per_batch": sec, "clips_per_s": b / sec,
                     "irmas_train_s": IRMAS_TRAINING_CLIPS * sec / b})
    best = max(rows, key=lambda r: r["clips_per_s"])
    summary = {"clips_per_s": best["clips_per_s"], "best_batch": best["batch"],
               "irmas_train_seconds": best["irmas_train_s"], "pitch_engine": DEFAULT_ENGINE, "rows": rows}
    return BenchResult("prepare: 3 s clips through mel + pYIN + mask (decoded audio)", rows, summary)


def random_features(n: int, device: torch.device, frames: int = 100, seed: int = 0) -> FeatureSet:
    """``n`` training windows of random dB values and random voiced bands, balanced over the classes."""
    g = torch.Generator().manual_seed(seed)
    mel = -80 * torch.rand(n, 1, 128, frames, generator=g)
    band = torch.randint(-1, 128, (n, frames), generator=g)
    labels = torch.nn.functional.one_hot(torch.arange(n) % len(CLASSES), len(CLASSES))
    names = [f"random-{i}" for i in range(n)]
    return FeatureSet(mel, band, torch.arange(n), labels, names, [""] * n, {"split": "train"}).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_bench(device: torch.device, quick: bool, args: argparse.Namespace):
    """Seconds per epoch (80 % of the clips, batch 16, plus validation) and samples per second."""
    from instrumentd.clients.bench import BenchResult

    n = 48 if quick else (640 if device.type == "cpu" else IRMAS_TRAINING_CLIPS)
    features = random_features(n, device)
    rows = []
    for amp in ((False,) if device.type == "cpu" else (True, False)):
        cfg = TrainConfig(epochs=2 if not quick else 1, amp=amp)
        _sync(device)
        t0 = time.perf_counter()
        result = train(features, cfg)
        _sync(device)
        wall = time.perf_counter() - t0
        epoch_s = result.history[-1].seconds  # the last epoch: warm-up (cuDNN autotune, allocator) excluded
        train_clips = len(result.split["train"])
        per_irmas_epoch = epoch_s * IRMAS_TRAINING_CLIPS / n
        rows.append({"amp": "bf16" if amp else "fp32", "clips": n, "epoch_s": epoch_s,
                     "samples_per_s": train_clips / epoch_s, "first_run_s": wall,
                     "irmas_100_epochs_s": 100 * per_irmas_epoch})
    best = min(rows, key=lambda r: r["epoch_s"])
    summary = {"epoch_s": best["epoch_s"], "samples_per_s": best["samples_per_s"],
               "irmas_100_epochs_s": best["irmas_100_epochs_s"], "amp": best["amp"],
               "config": dataclasses.asdict(TrainConfig()), "rows": rows}
    return BenchResult("train: the paper's protocol (batch 16, Adam, mask noise) on features held on the device",
                       rows, summary)
