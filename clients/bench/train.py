"""``instrumentd bench prepare`` and ``instrumentd bench train``.

``prepare``: 3 s clips per second through the feature extractor (mel, pYIN, mask), audio already
decoded, at several batch sizes; then ``instrumentd prepare`` itself, end to end, on WAV files in
IRMAS's training layout and format (44.1 kHz 16-bit stereo): decoding, features and writing the
``.pt`` files. On CUDA without ``--quick`` that is all 6,705 clips of IRMAS's training set.

``train``: seconds per epoch and samples per second of the paper's protocol (batch 16, Adam, mask
noise) on random features held on the device, and the time 100 epochs over 6,705 clips would take.
On CUDA four rows side by side: bfloat16 autocast or fp32, steps replayed from a CUDA graph or
eager; ``--epochs 100`` runs and times the default (bfloat16, graph) for all its epochs.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.config import DEFAULT
from instrumentd.pipeline.errors import ParameterError
from instrumentd.pipeline.features import FeatureExtractor
from instrumentd.pipeline.pitch import DEFAULT_ENGINE
from instrumentd.pipeline.timing import sync, time_call
from instrumentd.training.dataset import FeatureSet
from instrumentd.training.irmas import TRAIN_DIR
from instrumentd.training.prepare import prepare as prepare_corpus
from instrumentd.training.tones import harmonic_notes
from instrumentd.training.train import TrainConfig, train

from . import BenchResult

IRMAS_TRAINING_CLIPS = 6705
DISTINCT_CLIPS = 64  # different signals among the end-to-end run's files (the rest repeat them)


def harmonic_clips(n: int, seconds: float = 3.0, sr: int = 44100) -> np.ndarray:
    """``float32 [n, seconds * sr]``: notes of 5 harmonics with vibrato, a new pitch every 0.5 s, plus noise."""
    return np.stack([harmonic_notes(seconds, sr, vibrato=0.005, seed=i) for i in range(n)])


def prepare(device: torch.device, quick: bool, args: argparse.Namespace):
    """Feature extraction throughput, clips per second, by batch size."""
    extractor = FeatureExtractor(DEFAULT, DEFAULT_ENGINE, device)
    batches = (4, 16) if quick else ((16, 64) if device.type == "cpu" else (64, 256, 512))
    clips = harmonic_clips(max(batches))
    rows = []
    for b in batches:
        sec = time_call(lambda: extractor(clips[:b]), device, 0.5 if quick else 3.0, warmup=1)
        rows.append({"stage": "features (decoded audio)", "pitch engine": DEFAULT_ENGINE, "batch": b,
                     "s_per_batch": sec, "clips_per_s": b / sec, "irmas_train_s": IRMAS_TRAINING_CLIPS * sec / b})
    best = max(rows, key=lambda r: r["clips_per_s"])  # of the feature rows
    n_files = 22 if quick else (IRMAS_TRAINING_CLIPS if device.type == "cuda" else 110)
    whole = end_to_end(extractor, n_files, best["batch"])
    rows.append({"stage": f"prepare end to end ({n_files} WAV files)", "pitch engine": DEFAULT_ENGINE,
                 "batch": best["batch"], "s_per_batch": whole["seconds"] * best["batch"] / n_files,
                 "clips_per_s": whole["clips_per_s"], "irmas_train_s": whole["irmas_train_s"]})
    summary = {"clips_per_s": best["clips_per_s"], "best_batch": best["batch"],
               "irmas_train_seconds": best["irmas_train_s"], "pitch_engine": DEFAULT_ENGINE,
               "end_to_end": whole, "rows": rows}
    return BenchResult("prepare: 3 s clips through mel + pYIN + mask (decoded audio), then instrumentd prepare "
                       "end to end", rows, summary)


def end_to_end(extractor: FeatureExtractor, n: int, batch_size: int) -> dict:
    """``instrumentd prepare``'s work on ``n`` WAV files in IRMAS's training layout: seconds, clips per
    second and the seconds 6,705 clips would take (the files are written first, untimed)."""
    clips = (harmonic_clips(min(n, DISTINCT_CLIPS)) * 32767).astype(np.int16)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        for i in range(n):
            cls = CLASSES[i % len(CLASSES)]
            folder = corpus / TRAIN_DIR / cls
            folder.mkdir(parents=True, exist_ok=True)
            mono = clips[i % len(clips)]
            soundfile.write(folder / f"[{cls}][nod][cla]{i:04d}__1.wav", np.stack([mono, mono], 1), 44100,
                            subtype="PCM_16")
        sync(extractor.device)
        t0 = time.perf_counter()
        written = prepare_corpus(corpus, Path(tmp) / "features", "train", extractor, DEFAULT_ENGINE, batch_size)
        sync(extractor.device)
        seconds = time.perf_counter() - t0
    return {"clips": written, "seconds": seconds, "clips_per_s": written / seconds,
            "irmas_train_s": seconds * IRMAS_TRAINING_CLIPS / written}


def random_features(n: int, device: torch.device, frames: int = 100, seed: int = 0) -> FeatureSet:
    """``n`` training windows of random dB values and random voiced bands, balanced over the classes."""
    g = torch.Generator().manual_seed(seed)
    mel = -80 * torch.rand(n, 1, 128, frames, generator=g)
    band = torch.randint(-1, 128, (n, frames), generator=g)
    labels = torch.nn.functional.one_hot(torch.arange(n) % len(CLASSES), len(CLASSES))
    names = [f"random-{i}" for i in range(n)]
    return FeatureSet(mel, band, torch.arange(n), labels, names, [""] * n, {"split": "train"}).to(device)


def add_flags(p: argparse.ArgumentParser) -> None:
    """``instrumentd bench train``'s own flag (``prepare`` has none of its own)."""
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="for 'train': run N whole epochs of the protocol's default precision and time them all "
                        "(default: 2 epochs per precision, the last one timed and extrapolated)")


def train_bench(device: torch.device, quick: bool, args: argparse.Namespace):
    """Seconds per epoch (80 % of the clips, batch 16, plus validation) and samples per second."""
    n = 48 if quick else (640 if device.type == "cpu" else IRMAS_TRAINING_CLIPS)
    features = random_features(n, device)
    epochs = getattr(args, "epochs", None)
    if epochs is not None and epochs < 1:
        raise ParameterError(f"--epochs must be at least 1, got {epochs}")
    rows = []
    # (amp, CUDA graph) pairs; with --epochs, the protocol's own defaults only: a whole run is minutes
    if device.type == "cpu":
        setups = [(False, False)]
    else:
        setups = [(True, True)] if epochs else [(True, True), (True, False), (False, True), (False, False)]
    for amp, graph in setups:
        cfg = TrainConfig(epochs=epochs or (2 if not quick else 1), amp=amp)
        sync(device)
        t0 = time.perf_counter()
        result = train(features, cfg, cuda_graph=graph)
        sync(device)
        wall = time.perf_counter() - t0
        epoch_s = result.history[-1].seconds  # the last epoch: warm-up (cuDNN autotune, allocator) excluded
        train_clips = len(result.split["train"])
        per_irmas_epoch = epoch_s * IRMAS_TRAINING_CLIPS / n
        rows.append({"amp": "bf16" if amp else "fp32", "step": "cuda graph" if graph else "eager", "clips": n,
                     "epochs": cfg.epochs, "epoch_s": epoch_s,
                     "samples_per_s": train_clips / epoch_s, "wall_s": wall,
                     "irmas_100_epochs_s": 100 * per_irmas_epoch})
    best = min(rows, key=lambda r: r["epoch_s"])
    summary = {"epoch_s": best["epoch_s"], "samples_per_s": best["samples_per_s"],
               "irmas_100_epochs_s": best["irmas_100_epochs_s"], "amp": best["amp"], "step": best["step"],
               # every epoch timed, start-up included: the measured figure when --epochs 100 on 6,705 clips
               "epochs": best["epochs"], "wall_s": best["wall_s"],
               "config": dataclasses.asdict(TrainConfig()), "rows": rows}
    return BenchResult("train: the paper's protocol (batch 16, Adam, mask noise) on features held on the device",
                       rows, summary)
