"""The networks, their checkpoint format and the Recognizer (features -> probabilities)."""

from .checkpoint import CheckpointError, load, read_metadata, save
from .classes import CLASSES, NAMES
from .networks import DESCRIPTIONS, VARIANTS, build, count_parameters
from .recognizer import DEFAULT_CHECKPOINT, ClipResult, Recognizer, resolve_device

__all__ = [
    "CLASSES",
    "CheckpointError",
    "ClipResult",
    "DEFAULT_CHECKPOINT",
    "DESCRIPTIONS",
    "NAMES",
    "Recognizer",
    "VARIANTS",
    "build",
    "count_parameters",
    "load",
    "read_metadata",
    "resolve_device",
    "save",
]
