"""Corpus -> features: one ``.pt`` file per clip, then optionally one compact bundle.

Training clips (3 s) become DESIGN.md's samples, ``OUT/<cls>/<stem>.pt``::

    {"mel", "mask", "pred_spec"}: float32 [1, n_mels, frames]
    "label": int64 scalar (class index)
    "meta": {"source", "soundfont", "sample_rate", "hop_length", "pitch_engine", "mask"}

Test clips (5-20 s, multi-label) become ``OUT/test/<relative path>.pt`` holding all their 3 s
windows (1.5 s hop, the evaluation protocol)::

    {"mel", "mask", "pred_spec"}: float32 [windows, 1, n_mels, frames]
    "labels": int64 [n_classes] (0/1), "starts": float32 [windows] (seconds), "meta": as above

A finished file is never computed again, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from instrumentd import __version__
from instrumentd.model.classes import CLASSES
from instrumentd.model.recognizer import CLIP_HOP_SECONDS
from instrumentd.pipeline.audio import load_audio
from instrumentd.pipeline.config import DEFAULT, FeatureConfig
from instrumentd.pipeline.features import FeatureExtractor
from instrumentd.pipeline.windows import cut_windows

from .dataset import TEST_FOLDER
from .irmas import Clip, test_clips, training_clips

SPLITS = ("train", "test")
# 3 s windows per feature-extractor call, the fastest measured per device type (docs/PERFORMANCE.md):
# on a 2-core CPU batch 64 ran 5x slower than batch 4; on an H100 256 and 512 beat 64
BATCH_SIZE = {"cpu": 4, "cuda": 256}


@dataclasses.dataclass(frozen=True)
class Job:
    """One clip to prepare and the file it goes to."""

    clip: Clip
    out: Path


def jobs(corpus: str | Path, out: str | Path, split: str = "train") -> list[Job]:
    """Every clip of ``split`` in ``corpus`` with its output path (finished or not)."""
    out = Path(out)
    if split == "train":
        return [Job(c, out / c.labels[0] / (c.path.stem + ".pt")) for c in training_clips(corpus)]
    if split == "test":
        return [Job(c, out / TEST_FOLDER / Path(c.name).with_suffix(".pt")) for c in test_clips(corpus)]
    from instrumentd.pipeline.errors import ParameterError

    raise ParameterError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")


def _fit(audio: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad or cut ``audio: [samples]`` to exactly ``n`` samples."""
    return np.pad(audio, (0, max(0, n - len(audio))))[:n]


def _meta(clip: Clip, cfg: FeatureConfig, engine: str, mask_kind: str) -> dict:
    return {
        "source": clip.name,
        "soundfont": clip.soundfont,
        "sample_rate": cfg.sample_rate,
        "hop_length": cfg.hop_length,
        "pitch_engine": engine,
        "mask": mask_kind,
        "instrumentd": __version__,
    }


def _save(path: Path, sample: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    torch.save(sample, tmp)
    tmp.replace(path)


def _batches(todo: list[Job], batch_size: int, read: Callable[[Job], tuple]) -> Iterator[list[tuple[Job, tuple]]]:
    """Decode files on two threads while the caller computes features for the previous batch."""
    with ThreadPoolExecutor(2) as pool:
        pending = None
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            future = pool.submit(lambda c: [(j, read(j)) for j in c], chunk)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()


def prepare(corpus: str | Path, out: str | Path, split: str = "train", extractor: FeatureExtractor | None = None,
            engine_name: str = "", batch_size: int | None = None, mask_transform: Callable | None = None,
            on_progress: Callable[[int], None] | None = None) -> int:
    """Write the features of every clip of ``split`` not yet prepared; returns how many were written.

    Parameters
    ----------
    corpus : IRMAS-layout corpus root
    out : feature folder
    extractor : feature extractor (default: CPU, the pipeline's default pitch engine)
    engine_name : pitch engine name recorded in each file's ``meta``
    batch_size : 3 s windows per feature-extractor call (default :data:`BATCH_SIZE` for the extractor's device)
    mask_transform : ``mask [batch, n_mels, frames] -> mask`` applied before saving (the clean mask)
    on_progress : called with the number of clips finished (skipped ones included)
    """
    extractor = extractor or FeatureExtractor(DEFAULT)
    cfg = extractor.cfg
    batch_size = batch_size or BATCH_SIZE.get(extractor.device.type, BATCH_SIZE["cpu"])
    everything = jobs(corpus, out, split)
    todo = [j for j in everything if not j.out.is_file()]
    if on_progress and len(todo) < len(everything):
        on_progress(len(everything) - len(todo))
    mask_kind = "clean" if mask_transform else "pyin"
    hop = int(round(CLIP_HOP_SECONDS * cfg.sample_rate))
    if split == "train":
        per_batch = batch_size

        def read(job: Job) -> tuple[np.ndarray, np.ndarray]:
            return _fit(load_audio(job.clip.path, cfg.sample_rate), cfg.clip_samples)[None], np.zeros(1)
    else:
        per_batch = max(1, batch_size // 8)  # a test clip holds 3-13 windows

        def read(job: Job) -> tuple[np.ndarray, np.ndarray]:
            windows, starts = cut_windows(load_audio(job.clip.path, cfg.sample_rate), cfg.clip_samples, hop)
            return windows, starts / cfg.sample_rate

    written = 0
    for batch in _batches(todo, per_batch, read):
        windows = np.concatenate([w for _, (w, _) in batch])
        feats = extractor(windows)
        mask = mask_transform(feats.mask[:, 0])[:, None] if mask_transform else feats.mask
        mel, mask = feats.mel.cpu(), mask.cpu()
        pred = mel * mask
        i = 0
        for job, (w, starts) in batch:
            n = len(w)
            sample = {"mel": mel[i : i + n].clone(), "mask": mask[i : i + n].clone(), "pred_spec": pred[i : i + n].clone(),
                      "meta": _meta(job.clip, cfg, engine_name, mask_kind)}
            if split == "train":
                sample = {k: v[0] if isinstance(v, torch.Tensor) else v for k, v in sample.items()}
                sample["label"] = torch.tensor(CLASSES.index(job.clip.labels[0]), dtype=torch.int64)
            else:
                sample["labels"] = torch.tensor([int(c in job.clip.labels) for c in CLASSES], dtype=torch.int64)
                sample["starts"] = torch.as_tensor(starts, dtype=torch.float32)
            _save(job.out, sample)
            i += n
        written += len(batch)
        if on_progress:
            on_progress(len(batch))
    return written


def mask_cleaner(cfg: FeatureConfig = DEFAULT) -> Callable[[torch.Tensor], torch.Tensor]:
    """Table 5's clean mask (``pipeline.clean_mask``) from a raw mask: ``[b, n_mels, f] -> [b, n_mels, f]``.

    Each voiced frame's f0 is taken as its band's centre frequency; since bands are monotonic in
    f0, the median filter picks the same band as it would from the raw f0.
    """
    from instrumentd.pipeline.errors import ParameterError
    from instrumentd.pipeline.mel import mel_band_centres

    try:
        from instrumentd.pipeline.clean_mask import clean_mask
    except ImportError:
        raise ParameterError("--clean-mask needs instrumentd.pipeline.clean_mask, which this install lacks") from None
    centres = torch.as_tensor(mel_band_centres(cfg), dtype=torch.float32)

    def clean(mask: torch.Tensor) -> torch.Tensor:
        active = mask > 0.5
        band = active.to(torch.uint8).argmax(dim=1)
        f0 = torch.where(active.any(dim=1), centres.to(mask.device)[band], torch.nan)
        return clean_mask(f0, None, cfg)

    return clean
