"""Fused Triton kernels for pYIN's Viterbi decoding on CUDA.

The torch steps in :mod:`instrumentd.pipeline.pyin` materialise the transition band of every
state, ``[batch, 2, n_bins, width]`` floats a frame, and launch several kernels per frame. Here
one program runs many frames for a few items with the band read straight from the padded score
rows, and one program traces each path back. The float arithmetic is the torch steps' own, in the
same order (``(previous + band)``, max, ``+ switch``, max, clamp at ``LOG_TINY``, ``+ observation``,
minus the item's best; ties to the lowest state), so the decoded states are identical.

Only used for CUDA tensors when Triton imports (it ships with CUDA builds of torch):
:data:`AVAILABLE` says whether it did.
"""

from __future__ import annotations

import torch

from .pyin import LOG_TINY, PyinModel

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU builds of torch come without Triton; the torch steps serve there
    triton = None

__all__ = ["AVAILABLE", "backtrack", "forward", "usable"]

AVAILABLE = triton is not None
ITEMS_PER_PROGRAM = 4  # items that share one program's loads of the transition band


def usable(tensor: torch.Tensor) -> bool:
    """Whether the fused kernels can run on ``tensor``'s device."""
    return AVAILABLE and tensor.is_cuda


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
    grid = (triton.cdiv(n_items, ITEMS_PER_PROGRAM),)
    _forward_kernel[grid](
        scores, log_obs, band_t, fresh.to(torch.int8), n_items, t0, n, scores.stride(0), scores.stride(1),
        log_obs.stride(0), log_obs.stride(1), model.n_bins, padded, model.log_stay, model.log_switch, LOG_TINY,
        WIDTH=model.width, ITEMS=ITEMS_PER_PROGRAM, BLOCK=triton.next_power_of_2(model.n_bins), num_warps=8,
    )


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
    _backtrack_kernel[(n_paths,)](
        rows.contiguous(), overall.contiguous(), start_row.contiguous(), start_state.contiguous(), out, n_paths,
        n_steps, row_step, model.n_bins, rows.shape[-1], band, model.log_stay, model.log_switch, LOG_TINY,
        WIDTH=model.width, BLOCK=triton.next_power_of_2(2 * model.width), num_warps=4,
    )
    return out
