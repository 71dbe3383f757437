"""Prepared features held as tensors: from a folder of ``.pt`` files or from a bundle.

A feature folder holds ``<cls>/*.pt`` (training) and ``test/**/*.pt`` (:data:`TEST_FOLDER`), as
:func:`instrumentd.training.prepare.prepare` writes it. A bundle is a whole feature folder in one
compact safetensors file (about 13 KB per 3 s window)::

    mel    uint8 [N, n_mels, frames]   dB = mel * 80 / 255 - 80 (steps of 0.31 dB over the 80 dB range)
    band   int16 [N, frames]           mel band of the pitch mask, -1 unvoiced (the mask, exactly)
    clip   int64 [N]                   index of each window's clip
    labels uint8 [n_clips, n_classes]  multi-hot labels of each clip

The bundle header's ``instrumentd_bundle`` entry holds JSON: format, split, classes, clip names,
SoundFonts (``""`` for real recordings) and the features' metadata (pitch engine, hop, mask kind).

A training set is ``mel: float32 [N, 1, n_mels, frames]`` (dB, -80..0), ``band: int64 [N, frames]``
(the mel band of the pitch mask in each frame, -1 where unvoiced) and ``label: int64 [N]``. The
binary mask is rebuilt from ``band`` batch by batch, so a whole corpus fits on a GPU as it is.
A test set adds, per window, the clip it belongs to and, per clip, its multi-hot labels.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch

from instrumentd.model.checkpoint import write_safetensors
from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.config import TOP_DB
from instrumentd.pipeline.errors import InstrumentdError, ParameterError
from instrumentd.pipeline.mask import band_to_mask

TEST_FOLDER = "test"  # a feature folder's test clips, below it in the corpus's own layout


class FeatureError(InstrumentdError):
    """A feature folder or bundle that is missing, empty or inconsistent."""


@dataclasses.dataclass
class FeatureSet:
    """Windows and their labels, all as tensors on one device.

    ``clip`` maps each window to its clip (``arange(N)`` for training sets) and ``labels`` is the
    multi-hot label matrix of the clips, ``int64 [n_clips, n_classes]``. ``names`` and
    ``soundfonts`` are per clip.
    """

    mel: torch.Tensor  # float32 [N, 1, n_mels, frames]
    band: torch.Tensor  # int64 [N, frames]
    clip: torch.Tensor  # int64 [N]
    labels: torch.Tensor  # int64 [n_clips, n_classes]
    names: list[str]
    soundfonts: list[str]
    meta: dict[str, Any]

    def __len__(self) -> int:
        return self.mel.shape[0]

    @property
    def n_clips(self) -> int:
        return len(self.names)

    @property
    def label(self) -> torch.Tensor:
        """``int64 [N]``: each window's single class (training sets: one label per clip)."""
        return self.labels.argmax(dim=1)[self.clip]

    def mask(self, index: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """Binary pitch masks ``float32 [n, 1, n_mels, frames]`` of the windows at ``index``."""
        return band_to_mask(self.band[index], self.mel.shape[2]).unsqueeze(1)

    def to(self, device: torch.device | str) -> "FeatureSet":
        return dataclasses.replace(self, mel=self.mel.to(device), band=self.band.to(device), clip=self.clip.to(device),
                                   labels=self.labels.to(device))

    def select_clips(self, keep: np.ndarray) -> "FeatureSet":
        """The clips where ``keep: bool [n_clips]`` is true, their windows renumbered."""
        keep = torch.as_tensor(np.asarray(keep, dtype=bool))
        new_index = torch.cumsum(keep.long(), 0) - 1
        windows = keep.to(self.clip.device)[self.clip]
        idx = np.flatnonzero(keep.numpy())
        return dataclasses.replace(
            self, mel=self.mel[windows], band=self.band[windows], clip=new_index.to(self.clip.device)[self.clip[windows]],
            labels=self.labels[keep.to(self.labels.device)], names=[self.names[i] for i in idx],
            soundfonts=[self.soundfonts[i] for i in idx],
        )

    def with_soundfonts(self, soundfonts: tuple[str, ...] | None) -> "FeatureSet":
        """Only the clips rendered with one of ``soundfonts`` (all when None)."""
        if not soundfonts:
            return self
        have = sorted(set(self.soundfonts))
        unknown = [s for s in soundfonts if s not in have]
        if unknown:
            raise ParameterError(f"no clips rendered with SoundFont {unknown[0]!r} in these features; they hold {have}")
        return self.select_clips(np.array([s in soundfonts for s in self.soundfonts]))


def mask_to_band(mask: torch.Tensor, source: str = "") -> torch.Tensor:
    """``mask: [..., n_mels, frames]`` binary, at most one 1 per frame -> ``int64 [..., frames]``, -1 unvoiced."""
    active = mask > 0.5
    if (active.sum(dim=-2) > 1).any():
        raise FeatureError(f"{source}: mask has more than one active band in a frame; cannot store it as bands")
    return torch.where(active.any(dim=-2), active.to(torch.uint8).argmax(dim=-2), -1)


def _pt_files(folder: Path, split: str) -> list[Path]:
    if split == "train":
        files = sorted(f for c in CLASSES if (folder / c).is_dir() for f in (folder / c).glob("*.pt"))
    else:
        files = sorted((folder / TEST_FOLDER).rglob("*.pt"))
    if not files:
        where = folder / TEST_FOLDER if split == "test" else folder / "<cls>"
        raise FeatureError(f"{folder}: no .pt files in {where}; run 'instrumentd prepare' first")
    return files


def _load_pt(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise FeatureError(f"{path}: not a readable feature file ({str(exc).splitlines()[0][:120]})") from None


def load_folder(folder: str | Path, split: str = "train") -> FeatureSet:
    """Read every ``.pt`` of a feature folder written by :func:`instrumentd.training.prepare.prepare`."""
    folder = Path(folder)
    mels, bands, clip, labels, names, fonts = [], [], [], [], [], []
    meta: dict[str, Any] = {}
    for i, path in enumerate(_pt_files(folder, split)):
        d = _load_pt(path)
        missing = {"mel", "mask", "meta", "label" if split == "train" else "labels"} - set(d)
        if missing:
            raise FeatureError(f"{path}: missing {sorted(missing)}")
        mel = d["mel"].reshape(-1, *d["mel"].shape[-3:])
        mels.append(mel)
        bands.append(mask_to_band(d["mask"].reshape(-1, *d["mask"].shape[-2:]), str(path)))
        clip.append(torch.full((len(mel),), i, dtype=torch.int64))
        if split == "train":
            labels.append(torch.nn.functional.one_hot(d["label"].reshape(()), len(CLASSES)))
        else:
            labels.append(d["labels"].to(torch.int64))
        names.append(d["meta"].get("source", path.stem))
        fonts.append(d["meta"].get("soundfont", ""))
        meta = {k: v for k, v in d["meta"].items() if k not in ("source", "soundfont")}
    return FeatureSet(torch.cat(mels), torch.cat(bands), torch.cat(clip), torch.stack(labels), names, fonts,
                      {**meta, "split": split})


def load_features(path: str | Path, split: str = "train", soundfonts: tuple[str, ...] | None = None,
                  device: torch.device | str = "cpu") -> FeatureSet:
    """A feature folder or a ``.safetensors`` bundle, optionally only some SoundFonts, on ``device``."""
    path = Path(path)
    if path.is_dir():
        features = load_folder(path, split)
    elif path.is_file():
        features = read(path)
        if features.meta.get("split") != split:
            raise FeatureError(f"{path}: a {features.meta.get('split')!r} bundle, expected {split!r}")
    else:
        raise FeatureError(f"{path}: no such feature folder or bundle")
    return features.with_soundfonts(soundfonts).to(device)


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
    write_safetensors(path, tensors, METADATA_KEY, header)
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
