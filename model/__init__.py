"""The networks, their checkpoint format and the Recognizer (features -> probabilities)."""

from instrumentd.pipeline.lazy import lazy_exports

_EXPORTS = {  # name -> the submodule that defines it, imported on first use
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

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
