"""The constants of one pYIN configuration and the FFT autocorrelation, shared by the torch steps
(``pipeline.pyin``), the fused Triton kernels (``pipeline.pyin_kernels``) and the streaming engine."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import scipy.special
import torch

from .errors import ParameterError

__all__ = ["LOG_TINY", "PyinModel", "autocorrelation", "fft_batch", "pyin_model"]

LOG_TINY = float(np.log(np.finfo(np.float64).tiny))  # librosa.viterbi's floor: log(0 + tiny) = -708.4


@dataclasses.dataclass(frozen=True, eq=False)
class PyinModel:
    """The constants of one pYIN configuration (build with :func:`pyin_model`).

    Lags, periods and frame lengths are in samples; frequencies in hz. The HMM has ``2 * n_bins``
    states: voiced pitch bins ``0 .. n_bins - 1`` then unvoiced copies ``n_bins .. 2 n_bins - 1``.
    """

    sr: float
    fmin: float
    fmax: float
    frame_length: int
    hop_length: int
    center: bool
    pad_mode: str
    min_period: int
    max_period: int
    n_bins: int
    bins_per_semitone: int
    boltzmann_parameter: float
    no_trough_prob: float
    thresholds: np.ndarray  # float64 [n_thresholds + 1], 0 .. 1
    beta_probs: np.ndarray  # float64 [n_thresholds], prior mass of each threshold
    log_band: np.ndarray  # float64 [n_bins, width]: log P(bin j + d - width // 2 -> bin j), -inf off the grid
    log_stay: float  # log(1 - switch_prob)
    log_switch: float  # log(switch_prob)

    @property
    def width(self) -> int:
        """Transition band width in pitch bins (odd)."""
        return self.log_band.shape[1]

    @property
    def n_live_thresholds(self) -> int:
        """Thresholds up to the last with nonzero prior mass (90 of 100 for Beta(2, 18) in float64)."""
        return int(np.nonzero(self.beta_probs)[0].max()) + 1

    @property
    def freqs(self) -> np.ndarray:
        """float64 [n_bins] hz: the centre frequency of each pitch bin."""
        return self.fmin * 2.0 ** (np.arange(self.n_bins) / (12 * self.bins_per_semitone))

    def n_frames(self, n_samples: int) -> int:
        """Frames that :func:`frame` cuts from ``n_samples`` samples."""
        if self.center:
            n_samples += 2 * (self.frame_length // 2)
        return 1 + (n_samples - self.frame_length) // self.hop_length

    @functools.lru_cache(maxsize=8)
    def tensors(self, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The model's arrays as tensors on ``device`` (cached)."""
        as_t = functools.partial(torch.as_tensor, device=device)
        return {
            "thresholds": as_t(self.thresholds[1:], dtype=dtype),
            "log_beta": as_t(_log(self.beta_probs), dtype=dtype),
            "beta_mass_below": as_t(np.concatenate([[0.0], np.cumsum(self.beta_probs)]), dtype=dtype),
            "log_band": as_t(self.log_band, dtype=dtype),
            "log_band_t": as_t(self.log_band.T.copy(), dtype=dtype),  # [width, n_bins]
            # [2, width]: offsets into one padded scores row pair of a band window, voiced then unvoiced
            "window_offsets": as_t(
                np.arange(2)[:, None] * (self.n_bins + self.width - 1) + np.arange(self.width)[None], dtype=torch.long
            ),
            # [from voiced, from unvoiced] x [to voiced, to unvoiced] x 1
            "switch": as_t([[[self.log_stay], [self.log_switch]], [[self.log_switch], [self.log_stay]]], dtype=dtype),
            "freqs": as_t(self.freqs, dtype=torch.float64),
        }


@functools.lru_cache(maxsize=16)
def pyin_model(
    sr: float,
    fmin: float,
    fmax: float,
    frame_length: int = 2048,
    hop_length: int | None = None,
    n_thresholds: int = 100,
    beta_parameters: tuple[float, float] = (2, 18),
    boltzmann_parameter: float = 2,
    resolution: float = 0.1,
    max_transition_rate: float = 35.92,
    switch_prob: float = 0.01,
    no_trough_prob: float = 0.01,
    center: bool = True,
    pad_mode: str = "constant",
) -> PyinModel:
    """Check the parameters (librosa.pyin's names, units and defaults) and build a :class:`PyinModel`.

    ``max_transition_rate`` is in octaves per second, ``resolution`` in semitones.
    """
    if not 0 < fmin < fmax <= sr / 2:
        raise ParameterError(f"need 0 < fmin < fmax <= sr/2, got fmin={fmin}, fmax={fmax}, sr={sr}")
    if frame_length < 4 or frame_length % 2:
        raise ParameterError(f"frame_length must be an even number >= 4, got {frame_length}")
    if sr / fmin >= frame_length - 1:
        raise ParameterError(
            f"frame_length={frame_length} is too short for fmin={fmin} at sr={sr}: need > {sr / fmin + 1:.0f}"
        )
    hop_length = frame_length // 4 if hop_length is None else int(hop_length)
    if hop_length < 1:
        raise ParameterError(f"hop_length must be positive, got {hop_length}")
    if n_thresholds < 1:
        raise ParameterError(f"n_thresholds must be positive, got {n_thresholds}")
    if not 0 < resolution < 1:
        raise ParameterError(f"resolution must be in (0, 1), got {resolution}")
    if not 0 < switch_prob < 1:
        raise ParameterError(f"switch_prob must be in (0, 1), got {switch_prob}")
    if not 0 <= no_trough_prob <= 1:
        raise ParameterError(f"no_trough_prob must be in [0, 1], got {no_trough_prob}")
    if max_transition_rate <= 0:
        raise ParameterError(f"max_transition_rate must be positive, got {max_transition_rate}")

    min_period = int(np.floor(sr / fmax))
    max_period = min(int(np.ceil(sr / fmin)), frame_length - 1)
    thresholds = np.linspace(0, 1, n_thresholds + 1)
    beta_probs = np.diff(scipy.special.betainc(beta_parameters[0], beta_parameters[1], thresholds))
    bins_per_semitone = int(np.ceil(1.0 / resolution))
    n_bins = int(np.floor(12 * bins_per_semitone * np.log2(fmax / fmin))) + 1

    # librosa's local transition matrix, rows normalised near the edges, kept as its band only
    max_semitones_per_frame = round(max_transition_rate * 12 * hop_length / sr)
    width = max_semitones_per_frame * bins_per_semitone + 1
    log_band = _log_transition_band(n_bins, width)
    return PyinModel(
        sr=float(sr), fmin=float(fmin), fmax=float(fmax), frame_length=int(frame_length), hop_length=hop_length,
        center=bool(center), pad_mode=pad_mode, min_period=min_period, max_period=max_period, n_bins=n_bins,
        bins_per_semitone=bins_per_semitone, boltzmann_parameter=float(boltzmann_parameter),
        no_trough_prob=float(no_trough_prob), thresholds=thresholds, beta_probs=beta_probs, log_band=log_band,
        log_stay=math.log1p(-switch_prob), log_switch=math.log(switch_prob),
    )


def _log_transition_band(n_bins: int, width: int) -> np.ndarray:
    """``librosa.sequence.transition_local(n_bins, width, window="triangle", wrap=False)`` as its band.

    Returns float64 [n_bins, width]: element ``[j, d]`` is log P(bin ``j + d - width // 2`` -> bin ``j``),
    -inf where that bin is off the grid. Rows (source bins) near the edges are renormalised, as librosa.
    """
    half = width // 2
    window = _triangle(width)
    source = np.arange(n_bins)[:, None] + np.arange(width) - half  # [target, d]
    on_grid = (source >= 0) & (source < n_bins)
    # row k of librosa's matrix holds window[d'] at column k - half + d', for the columns on the grid
    row_sums = np.array([window[max(0, half - k) : width - max(0, k + half + 1 - n_bins)].sum() for k in range(n_bins)])
    prob = np.where(on_grid, window[::-1][None, :] / row_sums[source.clip(0, n_bins - 1)], 0.0)
    return _log(prob)


def _triangle(width: int) -> np.ndarray:
    """``scipy.signal.get_window("triangle", width, fftbins=False)``, float64 [width], without importing
    scipy.signal (a second of every daemon's start-up): peak 1 in the middle, no zeros at the ends."""
    n = np.arange(1, (width + 1) // 2 + 1)
    if width % 2:
        half = 2 * n / (width + 1.0)
        return np.r_[half, half[-2::-1]]
    half = (2 * n - 1.0) / width
    return np.r_[half, half[::-1]]


def autocorrelation(frames: torch.Tensor, model: PyinModel) -> torch.Tensor:
    """``frames [..., frame_length]`` -> ``r [..., max_period + 1]``, ``r(k) = sum_m x(m) x(m + k)`` through
    the FFT (a view into rows of the FFT's length)."""
    n_fft = _fft_length(model.frame_length + model.max_period + 1)  # no circular wrap up to lag max_period
    rows = frames.shape[0] if frames.dim() == 2 else None
    extra = 0 if rows is None else fft_batch(rows, frames.device) - rows
    if extra:  # cuFFT plans a transform per batch size, and every push has its own number of frames
        frames = torch.nn.functional.pad(frames, (0, 0, 0, extra))
    spectrum = torch.fft.rfft(frames, n=n_fft)
    acf = torch.fft.irfft(spectrum.real.square() + spectrum.imag.square(), n=n_fft)[..., : model.max_period + 1]
    return acf if rows is None else acf[:rows]


def fft_batch(n: int, device: torch.device) -> int:
    """The number of rows to give a batched FFT of ``n`` rows on ``device``: ``n`` on a CPU, else ``n``
    rounded up to one of 8 sizes an octave (at most 1/8 more rows), so that cuFFT's plan cache holds a
    few dozen plans rather than one per batch size."""
    if device.type != "cuda" or n <= 16:
        return n
    step = 1 << (n.bit_length() - 4)
    return -(-n // step) * step


def _fft_length(n: int) -> int:
    """The smallest 2^k, 3 * 2^k or 5 * 2^k that is >= n (fast sizes for every FFT library)."""
    return min(f * 2 ** max(0, math.ceil(math.log2(n / f))) for f in (1, 3, 5))


def _log(x: np.ndarray) -> np.ndarray:
    """``log(x)`` with ``-inf`` for zeros, quietly."""
    with np.errstate(divide="ignore"):
        return np.log(x)
