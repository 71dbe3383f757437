"""Checkpoint format: safetensors weights + JSON metadata, loaded without pickle.

The metadata lives in the safetensors header under the key ``instrumentd`` and holds:
``format`` (version), ``variant``, ``classes``, ``features`` (a FeatureConfig dict),
``trained`` (bool), ``training`` (data and config), ``metrics`` and ``weights_sha256``,
a digest of every tensor's name, dtype, shape and bytes, so that a changed weight is caught.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from instrumentd.pipeline.config import FeatureConfig
from instrumentd.pipeline.errors import InstrumentdError, ParameterError

from .classes import CLASSES
from .networks import VARIANTS, build

FORMAT_VERSION = 1
METADATA_KEY = "instrumentd"
MAX_METADATA_DEPTH = 32  # JSON nesting a checkpoint's metadata may have
# what a feature config can ask of the daemon and classify without exhausting the machine
FEATURE_LIMITS = {"sample_rate": 192000, "window_length": 1 << 16, "n_mels": 512, "clip_seconds": 30.0,
                  "pitch_frame_length": 1 << 16}


class CheckpointError(InstrumentdError):
    """A checkpoint that is missing, corrupt, tampered with or does not fit."""


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors in name order: name, dtype, shape and raw bytes."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def honour_umask(path: str | Path) -> None:
    """Give ``path`` the mode a new file gets under the process's umask (safetensors writes 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], key: str, header: dict[str, Any]) -> None:
    """Write ``tensors`` with ``header`` as JSON under metadata ``key``, all or nothing: a temporary file
    beside ``path``, the umask's mode, then a rename (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    safetensors.torch.save_file(tensors, str(tmp), metadata={key: json.dumps(header)})
    honour_umask(tmp)
    tmp.replace(path)


def _why(exc: OSError) -> str:
    return "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) else (exc.strerror or str(exc))


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, counting no further than ``limit`` + 1."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        level = [v for x in level if isinstance(x, (dict, list)) for v in (x.values() if isinstance(x, dict) else x)]
        level = [x for x in level if isinstance(x, (dict, list))]
    return depth


def save(path: str | Path, model: torch.nn.Module, variant: str, features: FeatureConfig,
         classes: tuple[str, ...] = CLASSES, trained: bool = True, **extra: Any) -> dict[str, Any]:
    """Write ``model`` to ``path`` with its metadata; returns the metadata written.

    ``extra`` goes into the metadata as is (``training``, ``metrics``...): it must be JSON.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT_VERSION,
        "variant": variant,
        "classes": list(classes),
        "features": features.to_dict(),
        "trained": trained,
        **extra,
        "weights_sha256": weights_digest(state),
    }
    write_safetensors(Path(path), state, METADATA_KEY, meta)
    return meta


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint, without loading its weights."""
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise CheckpointError(f"{path}: not a regular file, so not a checkpoint")
        os.close(os.open(path, os.O_RDONLY))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({_why(exc)})") from None
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except (safetensors.SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    if raw is None:
        raise CheckpointError(f"{path}: safetensors file without instrumentd metadata")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{path}: metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: metadata is a JSON {type(meta).__name__}, not an object")
    if _depth(meta, MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        raise CheckpointError(f"{path}: metadata nested more than {MAX_METADATA_DEPTH} deep")
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')!r}, this version reads {FORMAT_VERSION}")
    if meta.get("variant") not in VARIANTS:
        raise CheckpointError(f"{path}: unknown model variant {meta.get('variant')!r}")
    return meta


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu",
         expect_classes: tuple[str, ...] | None = CLASSES,
         expect_features: FeatureConfig | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The one loader: checkpoint -> ``(model in eval mode on device, metadata)``.

    Raises
    ------
    CheckpointError
        Corrupt or tampered file, or classes / feature config other than expected.
    """
    meta = read_metadata(path)
    if expect_classes is not None and tuple(meta["classes"]) != tuple(expect_classes):
        raise CheckpointError(f"{path}: checkpoint is for classes {meta['classes']}, expected {list(expect_classes)}")
    if not isinstance(meta.get("classes"), list) or not all(isinstance(c, str) for c in meta["classes"]):
        raise CheckpointError(f"{path}: metadata 'classes' is not a list of names")
    try:
        features = FeatureConfig.from_dict(meta["features"])
    except (KeyError, TypeError, ParameterError) as exc:
        raise CheckpointError(f"{path}: bad feature config in metadata ({exc})") from None
    for name, limit in FEATURE_LIMITS.items():
        if getattr(features, name) > limit:
            raise CheckpointError(f"{path}: features.{name} = {getattr(features, name)} is beyond what this version "
                                  f"runs (at most {limit})")
    if expect_features is not None and features != expect_features:
        raise CheckpointError(f"{path}: checkpoint was trained with features {features}, expected {expect_features}")
    try:
        state = safetensors.torch.load_file(str(path))
    except (safetensors.SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read weights ({exc})") from None
    if weights_digest(state) != meta.get("weights_sha256"):
        raise CheckpointError(f"{path}: weights do not match their recorded digest (file corrupt or tampered with)")
    bad = sorted(k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all()))
    if bad:
        raise CheckpointError(f"{path}: weights hold NaN or infinity ({len(bad)} tensor(s), first {bad[0]}); "
                              f"the training diverged")
    model = build(meta["variant"], len(meta["classes"]))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit variant {meta['variant']!r} ({first})") from None
    return model.to(device).eval(), meta


def checkpoint_id(meta: dict[str, Any]) -> str:
    """Short identifier for events and reports: variant plus the first 12 hex digits of the weights digest."""
    return f"{meta['variant']}-{meta['weights_sha256'][:12]}"
