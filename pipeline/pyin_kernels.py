"""Fused Triton kernels for pYIN on CUDA: the observation step and the Viterbi decoding.

The torch steps in :mod:`instrumentd.pipeline.pyin` materialise the transition band of every
state, ``[batch, 2, n_bins, width]`` floats a frame, and launch several kernels per frame. Here
one program runs many frames for a few items with the band read straight from the padded score
rows, and one program traces each path back. The float arithmetic is the torch steps' own, in the
same order (``(previous + band)``, max, ``+ switch``, max, clamp at ``LOG_TINY``, ``+ observation``,
minus the item's best; ties to the lowest state), so the decoded states are identical.

:func:`observe` is the rest of :func:`~instrumentd.pipeline.pyin.cmndf` after the FFT,
:func:`~instrumentd.pipeline.pyin.parabolic_shifts` and :func:`~instrumentd.pipeline.pyin.observations`
in one program per frame: the torch steps build ``[frames, troughs, thresholds]`` tensors through
some forty kernels; here a frame's YIN row, troughs and scores live in registers and a small
scratch row. Its float maths follows the
torch steps' order without fused multiply-adds; exp, log and log2 are the GPU's fast versions, so
results agree to a few units in the last place rather than to the bit.

Only used for CUDA tensors when Triton imports (it ships with CUDA builds of torch):
:data:`AVAILABLE` says whether it did.
"""

from __future__ import annotations

import math
import threading

import torch

from .devices import guard
from .pyin_model import LOG_TINY, PyinModel, autocorrelation

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU builds of torch come without Triton; the torch steps serve there
    triton = None

__all__ = ["AVAILABLE", "KERNELS", "backtrack", "compile_forward", "forward", "forward_layout", "hash_triton_early",
           "observe", "usable"]

AVAILABLE = triton is not None
# the Viterbi forward kernel's layouts, (items a program, warps a program): a program steps its items'
# frames one after the other, so a push of few items keeps few of the GPU's multiprocessors busy. One
# item a program with 8 warps decodes 15-250 streams' 33 new frames about 2x faster than 4 items with 4
# warps (H100: 15 x 33 frames 0.99 against 2.24 ms, 250 x 33 1.12 against 2.35); from a few hundred
# items on, 4 a program, sharing their loads of the transition band, is as fast (1,024 x 100: 8.5 ms)
SMALL_LAYOUT = (1, 8)
LARGE_LAYOUT = (4, 4)
LARGE_FROM = 512  # items from which a push uses LARGE_LAYOUT
TROUGH_CHUNK = 32  # troughs scored at once by the observation kernel ([chunk, thresholds] in registers)


def usable(tensor: torch.Tensor) -> bool:
    """Whether the fused kernels can run on ``tensor``'s device."""
    return AVAILABLE and tensor.is_cuda


def hash_triton_early() -> None:
    """Have Triton hash its own installation now, in a thread, instead of at the first kernel.

    Each process's first kernel launch makes Triton hash its compiler library for the key of its
    kernel cache (``triton.runtime.cache.triton_key``, kept for the process): half a second of a
    daemon's start-up on an H100 machine. Mostly file reads and hashing, which release the
    interpreter lock, so it runs beside the model's loading. Does nothing without Triton, or where
    that function is not there.
    """
    try:
        from triton.runtime.cache import triton_key
    except ImportError:
        return

    def run() -> None:
        try:
            triton_key()
        except Exception:  # the first kernel calls it again, and reports what fails
            pass

    threading.Thread(target=run, name="triton-key", daemon=True).start()


if AVAILABLE:

    # Triton compiles a kernel again for every new pattern of integer arguments equal to 1 or divisible
    # by 16 (and of pointers aligned to 16 bytes); the streaming step's counts, offsets and strides
    # change from push to push, and each new pattern stalled a daemon's step for about a second
    @triton.jit(do_not_specialize=["n_items", "t0", "n_steps", "s_item", "s_frame", "o_item", "o_frame", "n_bins",
                                   "padded"],
                do_not_specialize_on_alignment=["scores", "obs"])
    def _forward_kernel(scores, obs, band_t, fresh, n_items, t0, n_steps, s_item, s_frame, o_item, o_frame,
                        n_bins, padded, log_stay, log_switch, log_tiny,
                        WIDTH: tl.constexpr, ITEMS: tl.constexpr, BLOCK: tl.constexpr):
        item = tl.program_id(0) * ITEMS + tl.arange(0, ITEMS)[:, None]  # [ITEMS, 1]
        col = tl.arange(0, BLOCK)[None, :]  # [1, BLOCK] target pitch bin
        live = (item < n_items) & (col < n_bins)
        row_base = scores + item.to(tl.int64) * s_item
        obs_base = obs + item.to(tl.int64) * o_item
        first_fresh = tl.load(fresh + item, mask=item < n_items, other=0) != 0
        for i in tl.range(0, n_steps):
            prev = row_base + (t0 + i - 1) * s_frame + col  # padded column j + d is source bin j + d - WIDTH // 2
            acc_v = tl.full([ITEMS, BLOCK], float("-inf"), tl.float32)
            acc_u = tl.full([ITEMS, BLOCK], float("-inf"), tl.float32)
            for d in range(WIDTH):
                band = tl.load(band_t + d * n_bins + col, mask=col < n_bins, other=float("-inf"))
                acc_v = tl.maximum(acc_v, tl.load(prev + d, mask=live, other=float("-inf")) + band)
                acc_u = tl.maximum(acc_u, tl.load(prev + padded + d, mask=live, other=float("-inf")) + band)
            to_v = tl.maximum(acc_v + log_stay, acc_u + log_switch)
            to_u = tl.maximum(acc_v + log_switch, acc_u + log_stay)
            here = obs_base + i * o_frame + col
            obs_v = tl.load(here, mask=live, other=float("-inf"))
            obs_u = tl.load(here + n_bins, mask=live, other=float("-inf"))
            to_v = tl.maximum(to_v, log_tiny) + obs_v
            to_u = tl.maximum(to_u, log_tiny) + obs_u
            start = first_fresh & (i == 0)  # a stream's first frame: its observation alone
            to_v = tl.where(start, obs_v, to_v)
            to_u = tl.where(start, obs_u, to_u)
            best = tl.maximum(tl.max(tl.where(live, to_v, float("-inf")), 1),
                              tl.max(tl.where(live, to_u, float("-inf")), 1))[:, None]
            out = row_base + (t0 + i) * s_frame + WIDTH // 2 + col
            tl.store(out, to_v - best, mask=live)
            tl.store(out + padded, to_u - best, mask=live)
            tl.debug_barrier()  # the next frame reads what every thread of the program wrote

    @triton.jit(do_not_specialize=["n_paths", "n_steps", "row_step", "n_bins", "padded"],
                do_not_specialize_on_alignment=["scores"])
    def _backtrack_kernel(scores, overall, start_row, start_state, out, n_paths, n_steps, row_step,
                          n_bins, padded, band, log_stay, log_switch, log_tiny,
                          WIDTH: tl.constexpr, BLOCK: tl.constexpr):
        path = tl.program_id(0)
        flat = tl.arange(0, BLOCK)  # candidate = from-row * WIDTH + offset in the band
        from_row, offset = flat // WIDTH, flat % WIDTH
        live = flat < 2 * WIDTH
        row = tl.load(start_row + path).to(tl.int64)
        state = tl.load(start_state + path).to(tl.int64)
        for k in tl.range(0, n_steps):
            row -= row_step
            # as Python's % and //: a stream's first frames trace into empty (all -inf) history rows,
            # whose best "state" lies in the margin, below 0; those frames are never returned
            pitch = state % n_bins
            pitch = tl.where(pitch < 0, pitch + n_bins, pitch)
            to_unvoiced = tl.where(state < 0, 1, state // n_bins)
            window = tl.load(scores + row * (2 * padded) + from_row * padded + pitch + offset, mask=live,
                             other=float("-inf"))
            weight = tl.load(band + pitch * WIDTH + offset, mask=live, other=float("-inf"))
            switch = tl.where(from_row == to_unvoiced, log_stay, log_switch)
            candidate = tl.where(live, (window + weight) + switch, float("-inf"))
            best = tl.max(candidate, 0)
            arg = tl.argmax(candidate, 0, tie_break_left=True).to(tl.int64)
            source = (arg // WIDTH) * n_bins + pitch + arg % WIDTH - WIDTH // 2
            state = tl.where(best < log_tiny, tl.load(overall + row), source)
            tl.store(out + path * n_steps + (n_steps - 1 - k), state)


    @triton.jit(do_not_specialize=["s_acf", "s_frame", "max_period", "skip", "n_lags", "n_bins", "n_thr", "n_live"],
                # the scratch rows are views at offsets of frames x lags floats: any alignment
                do_not_specialize_on_alignment=["acf", "frames", "yin", "slot_lag", "slot_code", "slot_prob"])
    def _observe_kernel(acf, s_acf, frames, s_frame, yin, thresholds, log_beta, log_norm, mass_below, slot_lag,
                        slot_code, slot_prob, winner, out_voiced, out_prob, max_period, skip, n_lags, n_bins, n_thr,
                        n_live, thr_live, lam, no_trough_prob, min_period, sr, fmin, bins_per_octave, log_tiny, tiny,
                        PERIODS: tl.constexpr, LAGS: tl.constexpr, BINS: tl.constexpr, THR: tl.constexpr,
                        CHUNK: tl.constexpr):
        f = tl.program_id(0).to(tl.int64)
        scratch = f * n_lags
        row = yin + scratch
        # YIN's cumulative-mean-normalised difference at lags 1 .. max_period, as cmndf, into the row
        j = tl.arange(0, PERIODS)
        in_periods = j < max_period
        x = tl.load(frames + f * s_frame + j, mask=in_periods, other=0.0)
        diff = 2.0 * (tl.load(acf + f * s_acf) - tl.load(acf + f * s_acf + 1 + j, mask=in_periods, other=0.0)) \
            - tl.cumsum(x * x, 0)
        mean = tl.math.div_rn(tl.cumsum(diff, 0), (j + 1).to(tl.float32))
        # the row starts at lag min_period: the first ``skip`` lags are not kept
        tl.store(row + j - skip, tl.math.div_rn(diff, mean + tiny), mask=in_periods & (j >= skip))
        tl.debug_barrier()
        lag = tl.arange(0, LAGS)
        in_row = lag < n_lags
        y = tl.load(row + lag, mask=in_row, other=float("inf"))
        left = tl.load(row + lag - 1, mask=in_row & (lag >= 1), other=float("inf"))
        right = tl.load(row + lag + 1, mask=lag + 1 < n_lags, other=float("inf"))
        # librosa's local minima, strict on the left; the ends compare with their one neighbour
        trough = tl.where(lag == 0, y < right, tl.where(lag == n_lags - 1, y < left, (y < left) & (y <= right)))
        trough = trough & in_row
        has_trough = tl.max(trough.to(tl.int32), 0) > 0
        global_min = tl.argmin(tl.where(trough, y, float("inf")), 0, tie_break_left=True)
        is_min = (lag == global_min) & has_trough
        keep = (trough & (y < thr_live)) | is_min
        # thresholds[j] is (j + 1) / n_thr to within rounding: find how many are <= y from a guess
        guess = (tl.minimum(tl.maximum(y, -1.0), 2.0) * n_thr).to(tl.int32)
        guess = tl.minimum(tl.maximum(guess - 1, 0), n_thr)
        below = guess
        for step in tl.static_range(3):
            k = guess + step
            below += (tl.load(thresholds + k, mask=k < n_thr, other=float("inf")) <= y).to(tl.int32)
        min_below = tl.sum(tl.where(is_min, below, 0), 0)
        # the kept troughs in lag order, and how many sit under each threshold
        count = tl.sum(keep.to(tl.int32), 0)
        slot = tl.cumsum(keep.to(tl.int32), 0) - 1
        tl.store(slot_lag + scratch + slot, lag, mask=keep)
        tl.store(slot_code + scratch + slot, below, mask=keep)
        n_under = tl.cumsum(tl.histogram(tl.where(keep, below, THR - 1), THR), 0)  # [THR]
        thr = tl.arange(0, THR)
        live = thr < n_live
        base = tl.load(log_beta + thr, mask=live, other=float("-inf")) \
            + tl.load(log_norm + n_under, mask=live, other=0.0)
        min_extra = tl.log(no_trough_prob * tl.load(mass_below + min_below))
        tl.debug_barrier()
        running = tl.zeros([THR], tl.int32)
        for c0 in tl.range(0, count, CHUNK):
            s = c0 + tl.arange(0, CHUNK)
            valid = s < count
            code = tl.load(slot_code + scratch + s, mask=valid, other=THR)
            under = ((code[:, None] <= thr[None, :]) & live[None, :]).to(tl.int32)  # [CHUNK, THR]
            position = tl.cumsum(under, 0) + running[None, :] - 1
            running += tl.sum(under, 0)
            # the Boltzmann prior over the troughs under each threshold, weighted by the Beta prior
            terms = tl.where(under > 0, base[None, :] - lam * position.to(tl.float32), float("-inf"))
            top = tl.max(terms, 1)
            safe = tl.where(top == float("-inf"), 0.0, top)
            log_sum = safe + tl.log(tl.sum(tl.exp(terms - safe[:, None]), 1))
            log_prob = tl.where(top == float("-inf"), float("-inf"), log_sum)
            at = tl.load(slot_lag + scratch + s, mask=valid, other=0)
            # no trough under a threshold: its mass, times no_trough_prob, goes to the global minimum
            extra = tl.zeros([CHUNK], tl.float32) + min_extra
            with_min = tl.where((log_prob == float("-inf")) & (extra == float("-inf")), log_prob,
                                tl.maximum(log_prob, extra) + tl.log(1.0 + tl.exp(-tl.abs(log_prob - extra))))
            log_prob = tl.where(at == global_min, with_min, log_prob)
            # the parabola through the trough and its neighbours (none at the ends)
            mid = tl.load(row + at, mask=valid, other=0.0)
            lo = tl.load(row + at - 1, mask=valid & (at >= 1), other=0.0)
            hi = tl.load(row + at + 1, mask=valid & (at + 1 < n_lags), other=0.0)
            a = (hi + lo) - 2.0 * mid
            b = (hi - lo) * 0.5
            shift = tl.where(tl.abs(b) >= tl.abs(a), 0.0, tl.math.div_rn(-b, a))
            shift = tl.where((at == 0) | (at == n_lags - 1), 0.0, shift)
            period = (min_period + at.to(tl.float32)) + shift
            octaves = tl.log2(tl.math.div_rn(tl.math.div_rn(sr, period), fmin))
            scaled = bins_per_octave * octaves
            nearest = tl.floor(scaled + 0.5)
            odd = (nearest.to(tl.int32) & 1) == 1
            nearest = tl.where(((nearest - scaled) == 0.5) & odd, nearest - 1.0, nearest)  # half to even
            pitch_bin = tl.minimum(tl.maximum(nearest, 0.0), n_bins * 1.0).to(tl.int32)
            tl.store(slot_prob + scratch + s, log_prob, mask=valid)
            # several troughs in one bin: the one of the longest lag (the highest slot) wins
            tl.atomic_max(winner + f * n_bins + pitch_bin, s,
                          mask=valid & (log_prob > float("-inf")) & (pitch_bin < n_bins))
        tl.debug_barrier()
        pitch = tl.arange(0, BINS)
        in_bins = pitch < n_bins
        won = tl.load(winner + f * n_bins + pitch, mask=in_bins, other=-1, cache_modifier=".cg")
        value = tl.load(slot_prob + scratch + won, mask=won >= 0, other=float("-inf"), cache_modifier=".cg")
        tl.store(out_prob + f, tl.minimum(tl.maximum(tl.sum(tl.exp(value), 0), 0.0), 1.0))
        tl.store(out_voiced + f * n_bins + pitch, tl.maximum(value, log_tiny), mask=in_bins)

    # the three kernels, whose per-device caches show how often each was compiled
    KERNELS = (_observe_kernel, _forward_kernel, _backtrack_kernel)

def forward(scores: torch.Tensor, log_obs: torch.Tensor, t0: int, fresh: torch.Tensor | None,
            model: PyinModel) -> None:
    """Viterbi steps for frames ``t0 .. t0 + n - 1`` of every item, written into ``scores`` in place.

    Parameters
    ----------
    scores : float32 [items, frames, 2, n_bins + width - 1] normalised padded scores (any item and
        frame strides, e.g. a frame-major ``[frames, items, ...]`` store transposed); frame ``t0 - 1``
        holds each item's previous frame
    log_obs : float32 [items, n, 2, n_bins] the new frames' log-likelihoods (any item and frame strides,
        rows contiguous)
    t0 : first frame to compute, >= 1
    fresh : bool [items] or None: items whose frame ``t0`` is their very first (it takes its
        observation alone, as :func:`~instrumentd.pipeline.pyin.viterbi`'s first frame)
    """
    n_items, n = log_obs.shape[:2]
    if n_items == 0 or n == 0:
        return
    padded = scores.shape[-1]
    if scores.stride(-1) != 1 or scores.stride(-2) != padded or log_obs.stride(-1) != 1 \
            or log_obs.stride(-2) != model.n_bins:
        raise ValueError("score and observation rows must be contiguous")
    band_t = model.tensors(scores.device, torch.float32)["log_band_t"]
    if fresh is None:
        fresh = torch.zeros(n_items, dtype=torch.bool, device=scores.device)
    items, warps = forward_layout(n_items)
    grid = (triton.cdiv(n_items, items),)
    with guard(scores.device):  # Triton launches on the current device, which may be another GPU
        _forward_kernel[grid](
            scores, log_obs, band_t, fresh.to(torch.int8), n_items, t0, n, scores.stride(0), scores.stride(1),
            log_obs.stride(0), log_obs.stride(1), model.n_bins, padded, model.log_stay, model.log_switch, LOG_TINY,
            WIDTH=model.width, ITEMS=items, BLOCK=triton.next_power_of_2(model.n_bins), num_warps=warps,
        )


def forward_layout(n_items: int) -> tuple[int, int]:
    """``(items a program, warps a program)`` of :func:`forward` for a push of ``n_items`` items."""
    return LARGE_LAYOUT if n_items >= LARGE_FROM else SMALL_LAYOUT


def compile_forward(device: torch.device, model: PyinModel) -> None:
    """Compile :func:`forward` in each of its layouts for ``device`` now (a second or so each without
    Triton's disk cache), so that a daemon's first push of either size does not stall its step."""
    for n_items in (1, LARGE_FROM):
        # pyin.padded_scores's layout (pyin imports this module, so it is not imported back): -inf margins,
        # a first frame of zeros
        scores = torch.full((n_items, 2, 2, model.n_bins + model.width - 1), -math.inf, device=device)
        scores[:, 0, :, model.width // 2 : model.width // 2 + model.n_bins] = 0.0
        forward(scores, torch.zeros(n_items, 1, 2, model.n_bins, device=device), 1, None, model)


def backtrack(rows: torch.Tensor, overall: torch.Tensor, start_row: torch.Tensor, start_state: torch.Tensor,
              n_steps: int, row_step: int, model: PyinModel) -> torch.Tensor:
    """Trace paths back ``n_steps`` frames, as :func:`~instrumentd.pipeline.pyin.predecessor` step by step.

    Parameters
    ----------
    rows : float32 [n_rows, 2, n_bins + width - 1] contiguous normalised padded scores
    overall : int64 [n_rows] :func:`~instrumentd.pipeline.pyin.best_state` of each row
    start_row : int64 [paths] the row of each path's newest frame; frame ``k`` earlier is row
        ``start_row - k * row_step``
    start_state : int64 [paths] the state there
    n_steps, row_step : frames to go back, rows between consecutive frames of one path

    Returns
    -------
    int64 [paths, n_steps] states of the ``n_steps`` frames before the start, oldest first
    """
    n_paths = start_row.shape[0]
    out = torch.empty(n_paths, n_steps, dtype=torch.int64, device=rows.device)
    if n_paths == 0 or n_steps == 0:
        return out
    band = model.tensors(rows.device, torch.float32)["log_band"]
    with guard(rows.device):
        _backtrack_kernel[(n_paths,)](
            rows.contiguous(), overall.contiguous(), start_row.contiguous(), start_state.contiguous(), out, n_paths,
            n_steps, row_step, model.n_bins, rows.shape[-1], band, model.log_stay, model.log_switch, LOG_TINY,
            WIDTH=model.width, BLOCK=triton.next_power_of_2(2 * model.width), num_warps=4,
        )
    return out


def observe(frames: torch.Tensor, model: PyinModel) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~instrumentd.pipeline.pyin.observations` of the frames' YIN function and its parabolic shifts,
    the autocorrelation through torch's FFT and all the rest in one kernel.

    Parameters
    ----------
    frames : float32 [n, frame_length], rows contiguous
    model : the configuration

    Returns
    -------
    log_voiced : float32 [n, n_bins], log P(observation | voiced, bin), floored at ``LOG_TINY``
    voiced_prob : float32 [n]
    """
    n_frames = frames.shape[0]
    dev = frames.device
    if frames.stride(-1) != 1:
        frames = frames.contiguous()
    acf = autocorrelation(frames, model)  # [n, max_period + 1], a view of rows of the FFT length
    n_lags = model.max_period - model.min_period + 1
    t = model.tensors(dev, torch.float32)
    lam = model.boltzmann_parameter
    # log of the Boltzmann prior's normaliser for each possible count of troughs, as the torch step
    counts = torch.arange(n_lags + 1, device=dev, dtype=torch.float32)
    log_norm = math.log1p(-math.exp(-lam)) - torch.log1p(-torch.exp(-lam * counts))
    n_thr, n_live = len(model.beta_probs), model.n_live_thresholds
    # a column per trough code 0 .. n_thr (thresholds under it), the last collecting the troughs not kept
    thr = triton.next_power_of_2(n_thr + 2)
    scratch = torch.empty(4, n_frames, n_lags, device=dev, dtype=torch.int32)  # YIN, lags, codes, scores by slot
    winner = torch.full((n_frames, model.n_bins), -1, device=dev, dtype=torch.int32)
    log_voiced = torch.empty(n_frames, model.n_bins, device=dev, dtype=torch.float32)
    voiced_prob = torch.empty(n_frames, device=dev, dtype=torch.float32)
    if n_frames == 0:
        return log_voiced, voiced_prob
    with guard(dev):
        _observe_kernel[(n_frames,)](
            acf, acf.stride(0), frames, frames.stride(0), scratch[0].view(torch.float32), t["thresholds"],
            t["log_beta"],
            log_norm, t["beta_mass_below"], scratch[1], scratch[2], scratch[3].view(torch.float32), winner, log_voiced,
            voiced_prob, model.max_period, model.min_period - 1, n_lags, model.n_bins, n_thr, n_live,
            float(model.thresholds[n_live]), lam,
            model.no_trough_prob, float(model.min_period), model.sr, model.fmin, float(12 * model.bins_per_semitone),
            LOG_TINY, float(torch.finfo(torch.float32).tiny),
            PERIODS=triton.next_power_of_2(model.max_period), LAGS=triton.next_power_of_2(n_lags),
            BINS=triton.next_power_of_2(model.n_bins), THR=thr, CHUNK=TROUGH_CHUNK, num_warps=4, enable_fp_fusion=False,
        )
    return log_voiced, voiced_prob
