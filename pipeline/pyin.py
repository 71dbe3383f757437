"""Batched pYIN in torch: ``librosa.pyin``'s maths, vectorised over a batch, on CPU or CUDA.

The steps follow ``librosa.core.pitch.pyin`` (librosa 0.11) one by one, and each is usable alone:

1. :func:`frame` cuts centred frames;
2. :func:`cmndf` is YIN's cumulative-mean-normalised difference (the autocorrelation through the FFT);
3. :func:`parabolic_shifts` refines each lag by parabolic interpolation;
4. :func:`observations` turns the troughs into pitch-bin probabilities with the Beta threshold prior
   and the Boltzmann trough prior (the official pYIN software's variant, as librosa does);
   :func:`frame_observations` runs 2 to 4, the FFT aside, as one fused kernel on CUDA;
5. :func:`viterbi` decodes the voiced/unvoiced HMM for the whole batch at once, max-plus over
   librosa's local transition band, with librosa's log-epsilon floor on every transition.

:func:`pyin` chains them. :class:`~instrumentd.pipeline.pyin_model.PyinModel` holds the constants
that the steps share (and the fused kernels of ``pipeline.pyin_kernels`` read), and
``pipeline.pyin_stream`` runs the same steps incrementally.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import pyin_cpu, pyin_kernels
from .errors import ParameterError
from .pyin_model import LOG_TINY, PyinModel, autocorrelation, pyin_model

__all__ = [
    "best_state", "cmndf", "frame", "frame_observations", "log_observations",
    "normalise", "observations", "padded_scores", "parabolic_shifts", "predecessor", "pyin", "pyin_model",
    "states_to_f0", "viterbi", "viterbi_step",
]

_FFT_FRAMES = 8192  # frames per FFT call (about 0.2 GB of spectra), unless one item has more


def frame(audio: torch.Tensor, model: PyinModel) -> torch.Tensor:
    """``audio: [batch, samples]`` -> frames ``[batch, n_frames, frame_length]``, centred as librosa's ``center=True``.

    Frame ``t`` starts at sample ``t * hop - frame_length // 2`` of the unpadded audio when centred.
    """
    if model.center:
        pad = model.frame_length // 2
        audio = torch.nn.functional.pad(audio.unsqueeze(1), (pad, pad), mode=model.pad_mode).squeeze(1)
    return audio.unfold(-1, model.frame_length, model.hop_length)


def cmndf(frames: torch.Tensor, model: PyinModel) -> torch.Tensor:
    """YIN's cumulative-mean-normalised difference: ``frames [..., frame_length]`` -> ``[..., lags]``.

    ``lags = max_period - min_period + 1``.

    Element ``i`` is lag ``min_period + i`` samples. As librosa, the difference function is
    ``d(k) = 2 (r(0) - r(k)) - sum_{m < k} x(m)^2`` with ``r`` the autocorrelation through the FFT.
    """
    max_period = model.max_period
    acf = autocorrelation(frames, model)
    energy = frames[..., :max_period].square().cumsum(-1)
    diff = 2 * (acf[..., :1] - acf[..., 1:]) - energy  # lags 1 .. max_period
    lags = torch.arange(1, max_period + 1, device=frames.device, dtype=frames.dtype)
    cumulative_mean = diff.cumsum(-1) / lags
    tiny = torch.finfo(frames.dtype).tiny
    lo = model.min_period - 1
    return diff[..., lo:] / (cumulative_mean[..., lo:] + tiny)


def parabolic_shifts(yin: torch.Tensor) -> torch.Tensor:
    """Offset in lags ``(-1, 1)`` of the parabola's optimum through each point and its neighbours.

    0 at both ends and wherever the optimum lies a bin or more away, as librosa.
    """
    left, mid, right = yin[..., :-2], yin[..., 1:-1], yin[..., 2:]
    a = right + left - 2 * mid
    b = (right - left) / 2
    inner = torch.where(b.abs() >= a.abs(), torch.zeros_like(a), -b / a)
    return torch.nn.functional.pad(inner, (1, 1))


def _troughs(yin: torch.Tensor) -> torch.Tensor:
    """bool, same shape as ``yin``: librosa's local minima (strict on the left), both ends included."""
    inner = (yin[..., 1:-1] < yin[..., :-2]) & (yin[..., 1:-1] <= yin[..., 2:])
    first = yin[..., :1] < yin[..., 1:2]
    last = yin[..., -1:] < yin[..., -2:-1]
    return torch.cat([first, inner, last], -1)


def observations(yin: torch.Tensor, shifts: torch.Tensor, model: PyinModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Pitch-bin log-probabilities of each frame.

    Parameters
    ----------
    yin : [frames, lags] from :func:`cmndf` (any leading shape is flattened into frames)
    shifts : [frames, lags] from :func:`parabolic_shifts`
    model : the configuration

    Returns
    -------
    log_voiced : [frames, n_bins], log P(observation | voiced, bin), floored at ``LOG_TINY``
    voiced_prob : [frames], probability that the frame is voiced, in [0, 1]
    """
    lead = yin.shape[:-1]
    yin = yin.reshape(-1, yin.shape[-1])
    shifts = shifts.reshape(-1, shifts.shape[-1])
    n_frames, n_lags = yin.shape
    dev, dtype = yin.device, yin.dtype
    t = model.tensors(dev, dtype)
    n_thr = len(model.beta_probs)
    lam = model.boltzmann_parameter

    trough = _troughs(yin)
    has_trough = trough.any(-1, keepdim=True)
    global_min = yin.masked_fill(~trough, math.inf).argmin(-1, keepdim=True)
    # thresholds from n_live on have no prior mass, so troughs above them carry none (but the global minimum)
    n_live = model.n_live_thresholds
    keep = (trough & (yin < float(model.thresholds[n_live]))).scatter_(1, global_min, has_trough)

    # gather the troughs that can carry probability into [frames, m], in lag order
    count = keep.sum(-1)
    m = max(int(count.max()) if n_frames else 0, 1)
    slot = torch.where(keep, keep.cumsum(-1) - 1, m)
    lag = torch.full((n_frames, m + 1), n_lags - 1, device=dev, dtype=torch.long)
    lag.scatter_(1, slot, torch.arange(n_lags, device=dev).expand(n_frames, n_lags))
    lag = lag[:, :m]
    valid = torch.arange(m, device=dev) < count[:, None]
    # a trough counts for threshold n from n = below on
    trough_below = torch.searchsorted(t["thresholds"], yin.gather(1, lag), right=True).masked_fill_(~valid, n_thr)

    # Boltzmann prior over the troughs under each threshold, weighted by the Beta prior: in logs,
    # because a trough far down the list has mass exp(-lam * position) that float32 cannot hold
    under = trough_below[:, :, None] <= torch.arange(n_live, device=dev)  # [frames, m, live thresholds]
    position = under.cumsum(1) - 1
    n_under = under.sum(1, keepdim=True)
    log_norm = math.log1p(-math.exp(-lam)) - torch.log1p(-torch.exp(-lam * n_under.to(dtype)))
    log_terms = t["log_beta"][:n_live] + log_norm - lam * position.to(dtype)
    log_terms = torch.where(under, log_terms, -math.inf)
    log_prob = torch.logsumexp(log_terms, -1)  # [frames, m]

    # no trough under a threshold: its mass, times no_trough_prob, goes to the global minimum
    gm_slot = slot.gather(1, global_min)
    gm_below = torch.searchsorted(t["thresholds"], yin.gather(1, global_min), right=True)
    gm_extra = model.no_trough_prob * t["beta_mass_below"][gm_below]
    extra = torch.zeros_like(log_prob).scatter_(1, gm_slot.clamp(max=m - 1), torch.where(has_trough, gm_extra, 0))
    log_prob = torch.logaddexp(log_prob, extra.log())
    log_prob = torch.where(valid, log_prob, -math.inf)

    period = model.min_period + lag.to(dtype) + shifts.gather(1, lag)
    f0 = model.sr / period
    n_bins = model.n_bins
    bins = torch.round(12 * model.bins_per_semitone * torch.log2(f0 / model.fmin)).clamp(0, n_bins).long()
    # several troughs in one bin: the one of the longest lag wins (numpy's last assignment wins);
    # bin n_bins (above fmax) is dropped, as librosa's write there is overwritten
    bins = torch.where(torch.isfinite(log_prob), bins, n_bins)
    order = torch.arange(m, device=dev).expand(n_frames, m)
    winner = torch.full((n_frames, n_bins + 1), -1, device=dev, dtype=torch.long)
    winner.scatter_reduce_(1, bins, torch.where(bins < n_bins, order, -1), reduce="amax")
    winner = winner[:, :n_bins]
    log_voiced = torch.where(winner >= 0, log_prob.gather(1, winner.clamp(min=0)), -math.inf)
    voiced_prob = log_voiced.exp().sum(-1).clamp(0, 1)
    log_voiced = log_voiced.clamp(min=LOG_TINY)
    return log_voiced.reshape(*lead, n_bins), voiced_prob.reshape(lead)


def frame_observations(frames: torch.Tensor, model: PyinModel) -> tuple[torch.Tensor, torch.Tensor]:
    """``frames [n, frame_length]`` -> :func:`observations` of their :func:`cmndf` and its
    :func:`parabolic_shifts`: one fused kernel after the FFT for float32 on CUDA
    (``pipeline.pyin_kernels.observe``), the torch steps elsewhere."""
    if pyin_kernels.usable(frames) and frames.dtype == torch.float32:
        return pyin_kernels.observe(frames, model)
    yin = cmndf(frames, model)
    return observations(yin, parabolic_shifts(yin), model)


def log_observations(log_voiced: torch.Tensor, voiced_prob: torch.Tensor, model: PyinModel) -> torch.Tensor:
    """``[..., n_bins]`` voiced log-likelihoods and ``[...]`` voiced probability -> ``[..., 2, n_bins]``
    log P(observation | state), the unvoiced row the same for every bin and floored as librosa."""
    log_unv = torch.log((1 - voiced_prob) / model.n_bins).clamp(min=LOG_TINY)
    return torch.stack([log_voiced, log_unv[..., None].expand_as(log_voiced)], -2)


def padded_scores(*shape: int, model: PyinModel, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A ``[*shape, 2, n_bins + width - 1]`` store of normalised path scores, -inf in the margins.

    Scores live in ``[..., width // 2 : width // 2 + n_bins]``; the margins stand for bins off the grid,
    so the transition band can be read as a window without bounds checks.
    """
    return torch.full((*shape, 2, model.n_bins + model.width - 1), -math.inf, device=device, dtype=dtype)


def normalise(value: torch.Tensor, out: torch.Tensor, model: PyinModel) -> torch.Tensor:
    """Write ``value [batch, 2, n_bins]`` shifted so that each item's best is 0 into ``out``'s middle
    (a :func:`padded_scores` slice); returns ``out``. The shift leaves every argmax unchanged."""
    half = model.width // 2
    torch.sub(value, value.amax((1, 2), keepdim=True), out=out[..., half : half + model.n_bins])
    return out


def viterbi_step(previous: torch.Tensor, log_obs: torch.Tensor, model: PyinModel) -> torch.Tensor:
    """One max-plus step of the HMM for a batch.

    Parameters
    ----------
    previous : [batch, 2, n_bins + width - 1] normalised best path scores at the previous frame
        (:func:`normalise`), voiced row then unvoiced row
    log_obs : [batch, 2, n_bins] this frame's log-likelihoods (:func:`log_observations`)

    Returns
    -------
    value : [batch, 2, n_bins] best path scores into each state at this frame
    """
    t = model.tensors(previous.device, previous.dtype)
    from_block = (previous.unfold(-1, model.width, 1) + t["log_band"]).amax(-1)  # [batch, 2 from, n_bins]
    best = (from_block[:, :, None] + t["switch"]).amax(1)  # [batch, 2 to, n_bins]
    # off the band every transition has librosa's floor log(tiny), reached from the best state (score 0)
    return best.clamp_(min=LOG_TINY).add_(log_obs)


def best_state(scores: torch.Tensor, model: PyinModel) -> torch.Tensor:
    """``[..., 2, n_bins + width - 1]`` padded scores -> int64 [...] best state (the lowest on ties)."""
    flat = scores.flatten(-2).argmax(-1)
    row, col = flat // scores.shape[-1], flat % scores.shape[-1]
    return row * model.n_bins + col - model.width // 2


def predecessor(
    scores: torch.Tensor, overall: torch.Tensor, row: torch.Tensor, state: torch.Tensor, model: PyinModel
) -> torch.Tensor:
    """The best previous state of each path, exactly as :func:`viterbi_step` scored it.

    Parameters
    ----------
    scores : [rows, 2, n_bins + width - 1] contiguous normalised scores of previous frames
    overall : int64 [rows], :func:`best_state` of each row
    row : int64 [paths], the row of ``scores`` that holds each path's previous frame
    state : int64 [paths] state at this frame

    Returns
    -------
    int64 [paths] state at the previous frame; ties go to the lowest state, as numpy's argmax
    """
    n_bins, width, half = model.n_bins, model.width, model.width // 2
    padded = scores.shape[-1]
    t = model.tensors(scores.device, scores.dtype)
    pitch, to_unvoiced = state % n_bins, state // n_bins
    # only the band around each path's bin is read: [paths, 2 from, width], bins pitch - half .. pitch + half
    index = (row * (2 * padded) + pitch)[:, None, None] + t["window_offsets"]
    window = scores.reshape(-1).take(index)
    path_scores = (window + t["log_band"][pitch][:, None]) + t["switch"][:, to_unvoiced].transpose(0, 1)
    best, arg = path_scores.flatten(1).max(1)
    source = (arg // width) * n_bins + pitch + arg % width - half
    return torch.where(best < LOG_TINY, overall[row], source)


def decoder_kernels(scores: torch.Tensor):
    """The compiled Viterbi decoding for ``scores``' device and dtype, :mod:`~instrumentd.pipeline.pyin_kernels`
    (Triton, CUDA) or :mod:`~instrumentd.pipeline.pyin_cpu` (numba, float32 on the CPU), each with ``forward``
    and ``backtrack``; None where neither runs (the torch steps then)."""
    if pyin_kernels.usable(scores) and scores.dtype == torch.float32:
        return pyin_kernels
    if pyin_cpu.usable(scores):
        return pyin_cpu
    return None


def viterbi(log_obs: torch.Tensor, model: PyinModel) -> torch.Tensor:
    """Most likely state sequence of each item.

    Parameters
    ----------
    log_obs : [batch, frames, 2, n_bins] from :func:`log_observations`

    Returns
    -------
    states : int64 [batch, frames], 0 .. n_bins - 1 voiced bins, n_bins .. 2 n_bins - 1 unvoiced
    """

    batch, n_frames = log_obs.shape[:2]
    scores = padded_scores(n_frames, batch, model=model, device=log_obs.device, dtype=log_obs.dtype)
    normalise(log_obs[:, 0], scores[0], model)
    kernels = decoder_kernels(scores)  # scores have log_obs's dtype
    if kernels is not None:
        kernels.forward(scores.transpose(0, 1), log_obs[:, 1:], 1, None, model)
        overall = best_state(scores, model).flatten()  # row t * batch + item
        last = (n_frames - 1) * batch + torch.arange(batch, device=scores.device)
        earlier = kernels.backtrack(scores.flatten(0, 1), overall, last, overall[last], n_frames - 1, batch, model)
        return torch.cat([earlier, overall[last, None]], 1)
    for i in range(1, n_frames):
        normalise(viterbi_step(scores[i - 1], log_obs[:, i], model), scores[i], model)
    state = best_state(scores[-1], model)
    if scores.device.type == "cpu":  # a backtrack is many tiny steps: numpy's per-call cost is lower
        return torch.from_numpy(_backtrack_numpy(scores.numpy(), state.numpy(), model))
    overall = best_state(scores, model)  # [frames, batch]
    items = torch.arange(batch, device=scores.device)
    states = [state]
    for i in range(n_frames - 1, 0, -1):
        state = predecessor(scores[i - 1], overall[i - 1], items, state, model)
        states.append(state)
    return torch.stack(states[::-1], 1)


def _backtrack_numpy(scores: np.ndarray, state: np.ndarray, model: PyinModel) -> np.ndarray:
    """:func:`predecessor` applied from the last frame back, in numpy, with the same float arithmetic.

    ``scores``: [frames, batch, 2, n_bins + width - 1] padded normalised scores; ``state``: int64 [batch]
    at the last frame. Returns int64 [batch, frames].
    """
    n_frames, batch = scores.shape[:2]
    n_bins, width, half = model.n_bins, model.width, model.width // 2
    t = model.tensors(torch.device("cpu"), torch.from_numpy(scores[:0]).dtype)
    log_band, switch = t["log_band"].numpy(), t["switch"].numpy()
    items, rows, offsets = np.arange(batch)[:, None, None], np.arange(2)[None, :, None], np.arange(width)
    states = np.empty((batch, n_frames), np.int64)
    states[:, -1] = state
    for i in range(n_frames - 1, 0, -1):
        previous = scores[i - 1]
        pitch, to_unvoiced = state % n_bins, state // n_bins
        window = previous[items, rows, pitch[:, None, None] + offsets]
        flat = ((window + log_band[pitch][:, None]) + switch[:, to_unvoiced].transpose(1, 0, 2)).reshape(batch, -1)
        arg = flat.argmax(1)
        state = (arg // width) * n_bins + pitch + arg % width - half
        floor = flat[np.arange(batch), arg] < LOG_TINY
        if floor.any():
            overall = previous[floor, :, half : half + n_bins].reshape(int(floor.sum()), -1).argmax(1)
            state[floor] = overall
        states[:, i - 1] = state
    return states


def states_to_f0(
    states: torch.Tensor, model: PyinModel, fill_na: float | None = math.nan
) -> tuple[torch.Tensor, torch.Tensor]:
    """HMM states ``[...]`` -> (f0 float64 [...] hz, voiced bool [...]); unvoiced f0 is ``fill_na``
    (or the bin's frequency when ``fill_na`` is None, as librosa)."""
    freqs = model.tensors(states.device, torch.float64)["freqs"]
    voiced = states < model.n_bins
    f0 = freqs[states % model.n_bins]
    if fill_na is not None:
        f0 = torch.where(voiced, f0, fill_na)
    return f0, voiced


def pyin(
    audio: torch.Tensor | np.ndarray,
    *,
    fmin: float,
    fmax: float,
    sr: float = 22050,
    fill_na: float | None = math.nan,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    **settings,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """pYIN fundamental frequency of a batch, with ``librosa.pyin``'s parameters, defaults and results.

    Parameters
    ----------
    audio : [batch, samples] or [samples] at ``sr`` hz; a tensor stays on its device unless ``device`` is given
    fmin, fmax : hz, the pitch range
    sr : hz
    fill_na : f0 of unvoiced frames (None: the bin's frequency), as librosa.pyin
    device : where to compute
    dtype : float32 (default) or float64 for the signal maths
    **settings : frame_length, hop_length (samples; hop defaults to ``frame_length // 4``), n_thresholds,
        beta_parameters, boltzmann_parameter, resolution (semitones), max_transition_rate (octaves per
        second), switch_prob, no_trough_prob, center, pad_mode: librosa.pyin's, checked by :func:`pyin_model`

    Returns
    -------
    f0 : float64 [batch, frames] hz, ``fill_na`` where unvoiced
    voiced_flag : bool [batch, frames]
    voiced_prob : [batch, frames] in [0, 1]

    ``frames = 1 + samples // hop_length`` when centred. A 1-D input gives 1-D outputs.
    """
    if "beta_parameters" in settings:  # the model cache needs a hashable pair
        settings["beta_parameters"] = tuple(settings["beta_parameters"])
    model = pyin_model(sr, fmin, fmax, **settings)
    audio = torch.as_tensor(audio)
    if device is not None:
        audio = audio.to(device)
    if audio.dim() not in (1, 2):
        raise ParameterError(f"audio must be [samples] or [batch, samples], got shape {tuple(audio.shape)}")
    if not audio.is_floating_point():
        raise ParameterError(f"audio must be floating point, got {audio.dtype}")
    squeeze = audio.dim() == 1
    audio = audio.reshape(-1, audio.shape[-1]).to(dtype)
    if model.n_frames(audio.shape[-1]) < 1:
        raise ParameterError(f"need at least {model.frame_length} samples without centring, got {audio.shape[-1]}")
    if not bool(torch.isfinite(audio).all()):
        raise ParameterError("audio contains NaN or infinite samples")
    log_voiced, voiced_prob = batch_observations(frame(audio, model), model)
    states = viterbi(log_observations(log_voiced, voiced_prob, model), model)
    f0, voiced = states_to_f0(states, model, fill_na)
    if squeeze:
        return f0[0], voiced[0], voiced_prob[0]
    return f0, voiced, voiced_prob


def batch_observations(frames: torch.Tensor, model: PyinModel) -> tuple[torch.Tensor, torch.Tensor]:
    """``frames [batch, n, frame_length]`` -> (log_voiced [batch, n, n_bins], voiced_prob [batch, n]).

    Items go through in groups of about ``_FFT_FRAMES`` frames, so only one group's frames are ever copied.
    """
    batch, n = frames.shape[:2]
    group = max(1, _FFT_FRAMES // max(n, 1))
    outs = []
    for i in range(0, batch, group):
        outs.append(frame_observations(frames[i : i + group].reshape(-1, frames.shape[-1]), model))
    log_voiced = torch.cat([o[0] for o in outs]).reshape(batch, n, model.n_bins)
    voiced_prob = torch.cat([o[1] for o in outs]).reshape(batch, n)
    return log_voiced, voiced_prob
