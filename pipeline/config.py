"""Feature configuration: the numbers of DESIGN.md, in one frozen object stored with every checkpoint."""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import ParameterError

SAMPLE_RATE = 44100  # hz
WINDOW_LENGTH = 2205  # samples, 50 ms Hann window
HOP_LENGTH = 1323  # samples, 30 ms: 3 s -> 100 frames
N_MELS = 128
TOP_DB = 80.0  # dB below the window's maximum
CLIP_SECONDS = 3.0  # seconds, the network's input
PITCH_FMIN = 65.41  # hz, C2
PITCH_FMAX = 2093.0  # hz, C7
PITCH_FRAME_LENGTH = 4096  # samples


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Everything that decides what a feature tensor means.

    Two checkpoints are interchangeable only if their ``FeatureConfig`` is equal.
    """

    sample_rate: int = SAMPLE_RATE
    window_length: int = WINDOW_LENGTH
    hop_length: int = HOP_LENGTH
    n_mels: int = N_MELS
    top_db: float = TOP_DB
    clip_seconds: float = CLIP_SECONDS
    pitch_fmin: float = PITCH_FMIN
    pitch_fmax: float = PITCH_FMAX
    pitch_frame_length: int = PITCH_FRAME_LENGTH

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ParameterError(f"sample_rate must be positive, got {self.sample_rate}")
        if not 0 < self.hop_length <= self.window_length:
            raise ParameterError(
                f"hop_length must be in (0, window_length={self.window_length}], got {self.hop_length}"
            )
        if self.n_mels < 8:
            raise ParameterError(f"n_mels must be at least 8, got {self.n_mels}")
        if not 0 < self.pitch_fmin < self.pitch_fmax < self.sample_rate / 2:
            raise ParameterError(
                f"need 0 < pitch_fmin < pitch_fmax < sr/2, got {self.pitch_fmin}, {self.pitch_fmax}"
            )
        if self.clip_samples < self.window_length:
            raise ParameterError(f"clip_seconds={self.clip_seconds} is shorter than one STFT window")

    @property
    def clip_samples(self) -> int:
        """Samples in one network input clip (132,300 at the defaults)."""
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def n_frames(self) -> int:
        """Frames in one clip: the first ``clip_samples // hop_length`` of a centred STFT (100 by default)."""
        return self.clip_samples // self.hop_length

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ParameterError(f"unknown feature settings: {sorted(unknown)}")
        return cls(**data)


DEFAULT = FeatureConfig()
TEN_MS = FeatureConfig(hop_length=441)  # the paper's text: 10 ms hop, 300 frames per 3 s
