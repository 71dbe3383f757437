"""Feature extraction: audio windows -> mel, pitch mask and predominant spectrogram, batched."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .config import DEFAULT, FeatureConfig
from .errors import ParameterError
from .mask import f0_to_mask, predominant_spectrogram
from .mel import MelFrontEnd
from .pitch import DEFAULT_ENGINE, PitchEngine, get_engine


@dataclasses.dataclass
class Features:
    """One batch of network inputs, each ``float32 [batch, 1, n_mels, frames]``."""

    mel: torch.Tensor
    mask: torch.Tensor
    pred_spec: torch.Tensor

    def to(self, device: torch.device | str) -> "Features":
        return Features(*(t.to(device) for t in (self.mel, self.mask, self.pred_spec)))

    def __len__(self) -> int:
        return self.mel.shape[0]


class FeatureExtractor:
    """``audio: float32 [batch, samples]`` at 44.1 kHz -> :class:`Features`.

    Parameters
    ----------
    cfg : feature configuration
    pitch_engine : a :data:`PitchEngine` or the name of a registered one
    device : where the mel front-end runs
    """

    def __init__(
        self,
        cfg: FeatureConfig = DEFAULT,
        pitch_engine: PitchEngine | str = DEFAULT_ENGINE,
        device: torch.device | str = "cpu",
    ):
        self.cfg = cfg
        self.pitch_engine = get_engine(pitch_engine) if isinstance(pitch_engine, str) else pitch_engine
        self.device = torch.device(device)
        self.mel_front_end = MelFrontEnd(cfg).to(self.device)

    def __call__(self, audio: np.ndarray | torch.Tensor) -> Features:
        """``audio: float32 [batch, samples]`` (or ``[samples]``), numpy or a tensor on any device."""
        if isinstance(audio, torch.Tensor):
            audio_t = audio.to(self.device, torch.float32)
            audio_t = audio_t.reshape(-1, audio_t.shape[-1])
        else:
            # the audio goes to the device once; mel and pitch are both computed there
            audio_t = torch.from_numpy(np.atleast_2d(np.asarray(audio, dtype=np.float32))).to(self.device)
        if audio_t.shape[-1] < self.cfg.window_length:
            raise ParameterError(
                f"need at least {self.cfg.window_length} samples per item, got {audio_t.shape[-1]}"
            )
        mel = self.mel_front_end(audio_t)
        f0 = self.pitch_engine(audio_t, self.cfg)
        mask = f0_to_mask(torch.as_tensor(f0, device=self.device), self.cfg)
        return Features(
            mel=mel.unsqueeze(1), mask=mask.unsqueeze(1), pred_spec=predominant_spectrogram(mel, mask).unsqueeze(1)
        )
