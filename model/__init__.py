"""The networks, their checkpoint format and the Recognizer (features -> probabilities)."""

from .checkpoint import CheckpointError, load_checkpoint, read_metadata, save
from .classes import CLASSES, NAMES
from .networks import DESCRIPTIONS, VARIANTS, build, count_parameters
from .recognizer import DEFAULT_CHECKPOINT, ClipResult, Recognizer

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
    "load_checkpoint",
    "read_metadata",
    "save",
]
