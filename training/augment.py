"""Augmentation for (mel, mask) pairs, applied on the device per batch; not part of the paper's protocol.

- :func:`spec_augment` (``instrumentd train --augment``): both inputs get the same time shift and
  the same masked stripes, so the pitch mask stays aligned with the spectrogram.
- :func:`timbre_eq` (``--timbre``): a random smooth equaliser per clip on the mel spectrogram, so
  that the network leans less on one synthesiser's spectral envelope (a SoundFont it never saw
  colours the same instrument differently). The mask is untouched.
- :func:`mix_pairs` (``--mix RATE``): a share of each batch gets another clip of the batch, of another
  class, added a little quieter, with a target split between the two classes by their power; test
  clips often have two or three predominant instruments at once.
"""

from __future__ import annotations

import torch

MEL_FLOOR_DB = -80.0  # a masked mel stripe reads as the window's floor: silence
TIME_STRIPES = 2
TIME_WIDTH = 10  # frames, at most
FREQ_STRIPES = 2
FREQ_WIDTH = 12  # mel bands, at most
TILT_DB = 6.0  # a clip's spectral tilt, lowest to highest band: uniform in +-TILT_DB
RIPPLE_DB = 2.0  # amplitude of each of the slow cosine ripples across the bands: uniform in +-RIPPLE_DB
RIPPLES = 3
MIX_GAIN_DB = 6.0  # the added clip's level under the clip it joins: uniform in 0..MIX_GAIN_DB dB


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


def blank_masks(mask: torch.Tensor, share: float) -> torch.Tensor:
    """``mask: [B, 1, n_mels, frames]`` -> a copy with a random ``share`` of the items' masks all 0, as
    for audio where pYIN finds no pitch: modality dropout, so that the network learns to name an
    instrument from its mel too and does not lean on the pitch track (register) alone."""
    kept = torch.rand(mask.shape[0], 1, 1, 1, device=mask.device) >= share
    return mask * kept


def timbre_eq(mel: torch.Tensor) -> torch.Tensor:
    """``mel: [B, 1, n_mels, frames]`` dB (maximum 0, floor -80) -> a copy through a random smooth
    equaliser per item: a tilt of +-:data:`TILT_DB` plus :data:`RIPPLES` cosine ripples of
    +-:data:`RIPPLE_DB` across the bands. Renormalised to a maximum of 0 dB and clipped at the floor,
    as the front end's ``power_to_db`` would give; cells at the floor (silence) stay there."""
    b, _, n_mels, _ = mel.shape
    position = torch.linspace(0.0, 1.0, n_mels, device=mel.device)  # [n_mels]
    tilt = (torch.rand(b, 1, device=mel.device) * 2 - 1) * TILT_DB * (position - 0.5)
    k = torch.arange(1, RIPPLES + 1, device=mel.device, dtype=position.dtype)
    ripples = torch.cos(torch.pi * k[:, None] * position[None, :])  # [RIPPLES, n_mels]
    gains = (torch.rand(b, RIPPLES, device=mel.device) * 2 - 1) * RIPPLE_DB
    curve = (tilt + gains @ ripples).view(b, 1, n_mels, 1)
    shaped = mel + curve
    shaped = (shaped - shaped.amax(dim=(2, 3), keepdim=True)).clamp_min(MEL_FLOOR_DB)
    return torch.where(mel <= MEL_FLOOR_DB, mel, shaped)


def mix_pairs(mel: torch.Tensor, target: torch.Tensor, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix pairs of clips of one batch; each keeps its own pitch mask (the louder clip's pitch leads).

    Parameters
    ----------
    mel : [B, 1, n_mels, frames] dB, maximum 0, floor -80
    target : float [B, n_classes], class probabilities (one-hot for a plain batch)
    rate : share of the items that get a partner (another item of the batch, of another class)

    Returns
    -------
    mel, target : copies; a mixed item's mel is the dB of the summed mel powers, the partner
        ``g`` dB under (``g`` uniform in 0..:data:`MIX_GAIN_DB`), renormalised to a maximum of 0 dB and
        clipped at the floor; its target gives the partner's class the partner's share of the power
    """
    b = mel.shape[0]
    partner = torch.randperm(b, device=mel.device)
    chosen = (torch.rand(b, device=mel.device) < rate) & (target.argmax(1) != target[partner].argmax(1))
    gain = 10.0 ** (-MIX_GAIN_DB * torch.rand(b, device=mel.device) / 10)  # partner's power ratio, [B]
    power = 10.0 ** (mel / 10) + gain.view(b, 1, 1, 1) * 10.0 ** (mel[partner] / 10)
    mixed = 10 * torch.log10(power)
    mixed = (mixed - mixed.amax(dim=(2, 3), keepdim=True)).clamp_min(MEL_FLOOR_DB)
    share = (gain / (1 + gain)).view(b, 1)
    blended = (1 - share) * target + share * target[partner]
    return torch.where(chosen.view(b, 1, 1, 1), mixed, mel), torch.where(chosen.view(b, 1), blended, target)
