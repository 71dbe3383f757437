"""A feature bundle: a whole feature folder in one compact safetensors file (about 13 KB per 3 s window).

Tensors::

    mel    uint8 [N, n_mels, frames]   dB = mel * 80 / 255 - 80 (steps of 0.31 dB over the 80 dB range)
    band   int16 [N, frames]           mel band of the pitch mask, -1 unvoiced (the mask, exactly)
    clip   int64 [N]                   index of each window's clip
    labels uint8 [n_clips, n_classes]  multi-hot labels of each clip

The header's ``instrumentd_bundle`` entry holds JSON: format, split, classes, clip names,
SoundFonts (``""`` for real recordings) and the features' metadata (pitch engine, hop, mask kind).
"""

from __future__ import annotations

import json
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from instrumentd.model.checkpoint import honour_umask
from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.config import TOP_DB

from .dataset import FeatureError, FeatureSet, load_folder

FORMAT_VERSION = 1
METADATA_KEY = "instrumentd_bundle"
LEVELS = 255  # uint8 steps over the top_db range


def quantise(mel_db: torch.Tensor, top_db: float = TOP_DB) -> torch.Tensor:
    """``mel_db`` in [-top_db, 0] dB -> ``uint8`` steps of ``top_db / 255`` dB."""
    return ((mel_db + top_db) * (LEVELS / top_db)).round().clamp(0, LEVELS).to(torch.uint8)


def dequantise(q: torch.Tensor, top_db: float = TOP_DB) -> torch.Tensor:
    """Inverse of :func:`quantise`: ``uint8`` -> ``float32`` dB, within ``top_db / 510`` dB of the original."""
    return q.to(torch.float32) * (top_db / LEVELS) - top_db


def write(features: FeatureSet, path: str | Path) -> Path:
    """Save ``features`` as a bundle at ``path``; returns the path."""
    path = Path(path)
    tensors = {
        "mel": quantise(features.mel[:, 0].cpu()).contiguous(),
        "band": features.band.cpu().to(torch.int16).contiguous(),
        "clip": features.clip.cpu().contiguous(),
        "labels": features.labels.cpu().to(torch.uint8).contiguous(),
    }
    header = {
        "format": FORMAT_VERSION,
        "split": features.meta.get("split", "train"),
        "classes": list(CLASSES),
        "names": features.names,
        "soundfonts": features.soundfonts,
        "meta": features.meta,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    safetensors.torch.save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(header)})
    honour_umask(tmp)
    tmp.replace(path)
    return path


def read(path: str | Path) -> FeatureSet:
    """A bundle written by :func:`write`, as a :class:`FeatureSet` on the CPU."""
    path = Path(path)
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
        tensors = safetensors.torch.load_file(str(path))
    except (safetensors.SafetensorError, OSError, ValueError) as exc:
        raise FeatureError(f"{path}: not a readable feature bundle ({exc})") from None
    if raw is None:
        raise FeatureError(f"{path}: safetensors file without a feature-bundle header")
    header = json.loads(raw)
    if header.get("format") != FORMAT_VERSION:
        raise FeatureError(f"{path}: bundle format {header.get('format')!r}, this version reads {FORMAT_VERSION}")
    if tuple(header.get("classes", ())) != CLASSES:
        raise FeatureError(f"{path}: bundle is for classes {header.get('classes')}, expected {list(CLASSES)}")
    missing = {"mel", "band", "clip", "labels"} - set(tensors)
    if missing:
        raise FeatureError(f"{path}: bundle lacks {sorted(missing)}")
    n_clips = tensors["labels"].shape[0]
    if len(header["names"]) != n_clips or len(header["soundfonts"]) != n_clips:
        raise FeatureError(f"{path}: {n_clips} clips but {len(header['names'])} names")
    return FeatureSet(
        mel=dequantise(tensors["mel"]).unsqueeze(1),
        band=tensors["band"].to(torch.int64),
        clip=tensors["clip"],
        labels=tensors["labels"].to(torch.int64),
        names=list(header["names"]),
        soundfonts=list(header["soundfonts"]),
        meta={**header["meta"], "split": header["split"]},
    )


def pack(folder: str | Path, path: str | Path, split: str = "train") -> tuple[Path, int]:
    """Pack the ``.pt`` files of a feature folder into a bundle; returns ``(path, number of clips)``."""
    features = load_folder(folder, split)
    return write(features, path), features.n_clips
