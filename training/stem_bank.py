"""A stem bank on the device: the audio that on-the-fly training mixes into new clips every epoch.

A bank is a folder written by ``instrumentd synth-stems`` (training/stems.py)::

    index.json   {"sample_rate": 44100, "stems": [{"path", "role", "cls", "bank", "seconds", ...}, ...]}
    pred/...     solo parts of one class each (role "pred", ``cls`` set)
    acc/...      accompaniment without a predominant part (role "acc")
    drums/...    drum grooves (role "drums")
    none/...     non-music: speech, noise, hum, near-silence... (role "none")
    rooms.npy    room impulse responses (training/rooms.py), simulated on first use

:func:`load_bank` decodes every stem once (soundfile, in threads), resamples what is not at the
pipeline's rate (soxr), pads or cuts each to one length and keeps each role as one tensor
``[stems, samples]`` on the device, so that a batch is gathered by index with no data loader.
"""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.errors import InstrumentdError

from .rooms import load_or_simulate

INDEX = "index.json"
ROLES = ("pred", "acc", "drums", "none")
ROOM_COUNT = 64


class BankError(InstrumentdError):
    """A stem bank that is missing, malformed or lacks what training needs."""


@dataclasses.dataclass
class StemBank:
    """Every stem of a bank as device tensors.

    ``audio[role]``: float16 ``[stems, samples]`` at ``sample_rate``, peak-normalised by the renderer;
    ``label``: int64 ``[pred stems]``, class indices of the ``pred`` stems; ``banks[role]``: the
    sample bank of each stem; ``rooms``: float32 ``[rooms, ir samples]``.
    """

    sample_rate: int
    audio: dict[str, torch.Tensor]
    label: torch.Tensor
    banks: dict[str, list[str]]
    kinds: list[str]  # the "kind" of each none stem (speech, noise, ...)
    rooms: torch.Tensor

    @property
    def samples(self) -> int:
        return int(self.audio["pred"].shape[1])

    def counts(self) -> dict[str, int]:
        return {role: int(t.shape[0]) for role, t in self.audio.items()}


def read_index(folder: str | Path) -> dict:
    """The parsed ``index.json`` of a bank, checked for the fields training reads."""
    path = Path(folder) / INDEX
    if not path.is_file():
        raise BankError(f"{folder}: not a stem bank (no {INDEX}; make one with instrumentd synth-stems)")
    try:
        index = json.loads(path.read_text())
        stems, rate = index["stems"], int(index["sample_rate"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BankError(f"{path}: malformed stem index ({exc})") from None
    for stem in stems:
        if stem.get("role") not in ROLES or not isinstance(stem.get("path"), str):
            raise BankError(f"{path}: bad stem entry {stem!r}")
        if stem["role"] == "pred" and stem.get("cls") not in CLASSES:
            raise BankError(f"{path}: pred stem {stem['path']} has class {stem.get('cls')!r}")
    if rate <= 0:
        raise BankError(f"{path}: sample_rate must be positive, got {rate}")
    return index


def solo_clips(folder: str | Path) -> list:
    """The solo (``pred``) stems of the bank at ``folder`` as test clips
    (:class:`~instrumentd.training.irmas.Clip`), each labelled with its class, its sample bank in
    the clip's ``soundfont`` field (so that a report has a row per bank), in index order."""
    from .irmas import Clip

    return [Clip(Path(folder) / s["path"], s["path"], (s["cls"],), s.get("bank") or "")
            for s in read_index(folder)["stems"] if s["role"] == "pred"]


def _decode(path: Path, sample_rate: int, samples: int) -> np.ndarray:
    """``float32 [samples]``: the file as mono at ``sample_rate``, cut or zero-padded."""
    import soundfile
    import soxr

    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as exc:
        raise BankError(f"{path}: cannot read stem ({exc})") from None
    mono = audio.mean(axis=1)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate).astype(np.float32)
    out = np.zeros(samples, np.float32)
    out[: min(samples, len(mono))] = mono[:samples]
    return out


def load_bank(folder: str | Path, sample_rate: int, device: torch.device | str = "cpu",
              exclude_banks: tuple[str, ...] = (), on_progress: Callable[[int], None] | None = None,
              threads: int = 8, room_count: int = ROOM_COUNT) -> StemBank:
    """Decode the bank at ``folder`` onto ``device``, leaving out stems of ``exclude_banks``, with
    ``room_count`` room responses (simulated once and saved in the bank when it has none).

    Every role must keep at least one stem, and every class at least one ``pred`` stem.
    """
    folder = Path(folder)
    index = read_index(folder)
    stems = [s for s in index["stems"] if s.get("bank") not in exclude_banks]
    seconds = max((float(s.get("seconds", 0)) for s in stems), default=0.0)
    samples = int(round(seconds * sample_rate))
    missing = [r for r in ROLES if not any(s["role"] == r for s in stems)]
    if missing or samples <= 0:
        raise BankError(f"{folder}: no {missing[0] if missing else 'audible'} stems"
                        + (f" once {', '.join(exclude_banks)} are left out" if exclude_banks else ""))
    absent = [c for c in CLASSES if not any(s.get("cls") == c for s in stems if s["role"] == "pred")]
    if absent:
        raise BankError(f"{folder}: no pred stem of class {absent[0]}")

    def decode(stem: dict) -> np.ndarray:
        out = _decode(folder / stem["path"], sample_rate, samples)
        if on_progress:
            on_progress(1)
        return out

    with ThreadPoolExecutor(threads) as pool:
        decoded = list(pool.map(decode, stems))
    device = torch.device(device)
    audio = {}
    for role in ROLES:
        rows = [a for a, s in zip(decoded, stems) if s["role"] == role]
        audio[role] = torch.from_numpy(np.stack(rows)).to(device, torch.float16)
    pred = [s for s in stems if s["role"] == "pred"]
    label = torch.tensor([CLASSES.index(s["cls"]) for s in pred], dtype=torch.int64, device=device)
    banks = {role: [str(s.get("bank", "")) for s in stems if s["role"] == role] for role in ROLES}
    kinds = [str(s.get("kind", "")) for s in stems if s["role"] == "none"]
    rooms = torch.from_numpy(load_or_simulate(folder, room_count, sample_rate)).to(device)
    return StemBank(sample_rate, audio, label, banks, kinds, rooms)


def split_stems(bank: StemBank, val_fraction: float, seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Indices per role ``(train, validation)``: ``val_fraction`` of each role's stems (of each class
    for ``pred``) held out, at least one, so validation clips are mixed from stems never trained on."""
    rng = np.random.default_rng(seed)
    train, val = {}, {}
    device = bank.label.device
    for role, audio in bank.audio.items():
        groups = ([np.flatnonzero(bank.label.cpu().numpy() == c) for c in range(len(CLASSES))]
                  if role == "pred" else [np.arange(audio.shape[0])])
        t_idx, v_idx = [], []
        for group in groups:
            group = rng.permutation(group)
            n_val = min(max(1, int(round(val_fraction * len(group)))), len(group) - 1) if len(group) > 1 else 0
            v_idx.extend(group[:n_val] if n_val else group)  # a single stem serves both sides
            t_idx.extend(group[n_val:])
        train[role] = torch.as_tensor(np.sort(t_idx), dtype=torch.int64, device=device)
        val[role] = torch.as_tensor(np.sort(v_idx), dtype=torch.int64, device=device)
    return train, val
