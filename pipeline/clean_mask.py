"""The "clean" pitch mask of the paper's Table 5: raw pYIN f0 with its typical errors removed.

Three steps, in this order, on an f0 track ``[batch, frames]`` (hz, NaN unvoiced):

1. **threshold smoothing** of the voicing: the voiced probability (pYIN's ``voiced_prob``, or 1/0 from
   the track itself) is averaged over ``smooth_frames`` frames and a frame is voiced where the
   average reaches ``threshold``: one-frame gaps close, one-frame blips fall below;
2. **median filter** of the pitch: each voiced frame takes the median f0 of the raw voiced frames
   within ``median_frames`` of it, which removes octave jumps and other one-off outliers
   (a frame voiced by step 1 with no raw voiced frame near it stays unvoiced);
3. **removal of isolated activations**: voiced runs shorter than ``min_run`` frames are dropped.

:func:`clean_f0` returns the cleaned track; :func:`clean_mask` turns it into the binary mel mask.
"""

from __future__ import annotations

import numpy as np
import torch

from .config import DEFAULT, FeatureConfig
from .errors import ParameterError
from .mask import f0_to_mask

__all__ = ["clean_f0", "clean_mask"]

MEDIAN_FRAMES = 5  # frames: 150 ms at the 30 ms hop
SMOOTH_FRAMES = 3  # frames
THRESHOLD = 0.5  # voiced probability
MIN_RUN = 3  # frames: shorter voiced runs are isolated activations


def clean_f0(
    f0: np.ndarray | torch.Tensor,
    voiced_prob: np.ndarray | torch.Tensor | None = None,
    *,
    median_frames: int = MEDIAN_FRAMES,
    smooth_frames: int = SMOOTH_FRAMES,
    threshold: float = THRESHOLD,
    min_run: int = MIN_RUN,
) -> torch.Tensor:
    """Clean an f0 track: threshold smoothing, median filter, removal of isolated activations.

    Parameters
    ----------
    f0 : [batch, frames] or [frames], hz, NaN (or <= 0) where unvoiced
    voiced_prob : same shape, in [0, 1]; None uses 1 where ``f0`` is voiced and 0 elsewhere
    median_frames : odd window of the median filter, frames
    smooth_frames : odd window of the voicing average, frames
    threshold : average voiced probability from which a frame counts as voiced
    min_run : voiced runs shorter than this many frames are removed

    Returns
    -------
    float32 [batch, frames] (or [frames]) hz, NaN where unvoiced, on ``f0``'s device
    """
    for name, value in (("median_frames", median_frames), ("smooth_frames", smooth_frames)):
        if not isinstance(value, int) or value < 1 or value % 2 == 0:
            raise ParameterError(f"{name} must be an odd number of frames >= 1, got {value!r}")
    if not 0 < threshold <= 1:
        raise ParameterError(f"threshold must be in (0, 1], got {threshold!r}")
    if not isinstance(min_run, int) or min_run < 1:
        raise ParameterError(f"min_run must be a number of frames >= 1, got {min_run!r}")
    f0 = torch.as_tensor(f0)
    if f0.dim() not in (1, 2):
        raise ParameterError(f"f0 must be [frames] or [batch, frames], got shape {tuple(f0.shape)}")
    squeeze = f0.dim() == 1
    f0 = f0.reshape(-1, f0.shape[-1]).to(torch.float32)
    raw_voiced = torch.isfinite(f0) & (f0 > 0)
    if voiced_prob is None:
        prob = raw_voiced.to(torch.float32)
    else:
        prob = torch.as_tensor(voiced_prob, device=f0.device).reshape(f0.shape).to(torch.float32)
        if prob.shape != f0.shape:
            raise ParameterError(f"voiced_prob must have f0's shape {tuple(f0.shape)}, got {tuple(prob.shape)}")

    # 1. threshold smoothing: a centred moving average (over the frames that exist at the edges)
    smoothed = torch.nn.functional.avg_pool1d(
        prob[:, None], smooth_frames, stride=1, padding=smooth_frames // 2, count_include_pad=False
    )[:, 0]
    voiced = smoothed >= threshold

    # 2. median filter over the raw voiced f0 values around each frame (the lower median for even counts)
    half = median_frames // 2
    padded = torch.nn.functional.pad(torch.where(raw_voiced, f0, torch.nan), (half, half), value=torch.nan)
    median = padded.unfold(-1, median_frames, 1).nanmedian(-1).values
    voiced &= torch.isfinite(median)

    # 3. isolated activations: voiced runs shorter than min_run
    voiced &= _run_length(voiced) >= min_run
    out = torch.where(voiced, median, torch.nan)
    return out[0] if squeeze else out


def clean_mask(
    f0: np.ndarray | torch.Tensor,
    voiced_prob: np.ndarray | torch.Tensor | None = None,
    cfg: FeatureConfig = DEFAULT,
    **params,
) -> torch.Tensor:
    """``f0 [batch, frames]`` hz -> clean binary mask ``float32 [batch, n_mels, frames]``.

    ``params`` are :func:`clean_f0`'s (``median_frames``, ``smooth_frames``, ``threshold``, ``min_run``).
    """
    f0 = clean_f0(f0, voiced_prob, **params)
    return f0_to_mask(f0.reshape(-1, f0.shape[-1]), cfg)


def _run_length(flag: torch.Tensor) -> torch.Tensor:
    """``bool [batch, frames]`` -> int64 [batch, frames]: length of the run of True through each frame, 0 on False."""
    previous = torch.nn.functional.pad(flag[:, :-1], (1, 0), value=False)
    run_id = torch.cumsum(flag & ~previous, 1) * flag  # 1, 2, ... per run; 0 off the runs
    lengths = torch.zeros(flag.shape[0], flag.shape[1] + 1, dtype=torch.long, device=flag.device)
    lengths.scatter_add_(1, run_id, flag.long())
    return torch.where(flag, lengths.gather(1, run_id), 0)
