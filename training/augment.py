"""SpecAugment-style augmentation for (mel, mask) pairs, applied on the device per batch.

Not part of the paper's protocol (``instrumentd train --augment`` turns it on). Both inputs get the
same time shift and the same masked stripes, so the pitch mask stays aligned with the spectrogram.
"""

from __future__ import annotations

import torch

MEL_FLOOR_DB = -80.0  # a masked mel stripe reads as the window's floor: silence
TIME_STRIPES = 2
TIME_WIDTH = 10  # frames, at most
FREQ_STRIPES = 2
FREQ_WIDTH = 12  # mel bands, at most


def _stripes(batch: int, length: int, count: int, width: int, device: torch.device) -> torch.Tensor:
    """``bool [batch, length]``: True inside ``count`` random stripes of 0..``width`` cells per item."""
    widths = torch.randint(0, width + 1, (batch, count, 1), device=device)
    starts = (torch.rand(batch, count, 1, device=device) * (length - widths + 1)).long()
    pos = torch.arange(length, device=device).view(1, 1, -1)
    return ((pos >= starts) & (pos < starts + widths)).any(dim=1)


def spec_augment(mel: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``mel, mask: [B, 1, n_mels, frames]`` -> augmented copies: a random circular time shift,
    then time and frequency stripes (mel to the dB floor, mask to 0)."""
    b, _, n_mels, frames = mel.shape
    shift = int(torch.randint(0, frames, (1,)))
    mel, mask = mel.roll(shift, dims=-1), mask.roll(shift, dims=-1)
    time = _stripes(b, frames, TIME_STRIPES, TIME_WIDTH, mel.device).view(b, 1, 1, frames)
    freq = _stripes(b, n_mels, FREQ_STRIPES, FREQ_WIDTH, mel.device).view(b, 1, n_mels, 1)
    hidden = time | freq
    return mel.masked_fill(hidden, MEL_FLOOR_DB), mask.masked_fill(hidden, 0.0)
