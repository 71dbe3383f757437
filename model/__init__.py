"""The networks, their checkpoint format and the Recognizer (features -> probabilities)."""

import importlib
from typing import Any

# name -> the submodule that defines it; imported on first use, so that importing one light submodule
# (errors, config) does not load torch
_EXPORTS = {
    "CLASSES": "classes",
    "CheckpointError": "checkpoint",
    "ClipResult": "recognizer",
    "DEFAULT_CHECKPOINT": "recognizer",
    "DESCRIPTIONS": "networks",
    "NAMES": "classes",
    "Recognizer": "recognizer",
    "VARIANTS": "networks",
    "build": "networks",
    "count_parameters": "networks",
    "load_checkpoint": "checkpoint",
    "read_metadata": "checkpoint",
    "save": "checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
