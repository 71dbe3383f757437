"""pYIN's Viterbi decoding on the CPU, compiled with numba: the forward steps and the trace back.

The torch steps (:func:`~instrumentd.pipeline.pyin.viterbi_step` and
:func:`~instrumentd.pipeline.pyin.predecessor`) run a few operations per frame, each over a
``[items, 2, n_bins, width]`` band it first lays out; on a CPU that is dispatch and memory traffic
per frame (one stream's second, 34 frames: 3.7 ms, 15 streams together 27 ms, 60 streams 690 ms on a
2-core x86_64 CPU). Here one compiled loop reads the band straight from the padded score rows, the
band's offsets outermost so the bins vectorise: 0.5, 7 and 29 ms. The float32 arithmetic is the
torch steps' own, in the same order (``(previous + band)``, max, ``+ switch``, max, clamp at
``LOG_TINY``, ``+ observation``, minus the item's best; ties to the lowest state), so the decoded
states are identical, as with the CUDA kernels (:mod:`~instrumentd.pipeline.pyin_kernels`), whose
contract :func:`forward` and :func:`backtrack` share.

numba comes with librosa; :data:`AVAILABLE` says whether it is installed. It is imported, and the two
loops compiled (1.5 s on that CPU) or loaded from numba's cache (0.3 s), at the first decoding of a
process, not when this module is imported: commands that decode no pitch do not pay for it.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
import torch

from .pyin_model import LOG_TINY, PyinModel

__all__ = ["AVAILABLE", "backtrack", "forward", "usable"]

AVAILABLE = importlib.util.find_spec("numba") is not None  # without it the torch steps serve


def usable(tensor: torch.Tensor) -> bool:
    """Whether these loops can decode ``tensor`` (float32 scores on the CPU)."""
    return AVAILABLE and tensor.device.type == "cpu" and tensor.dtype == torch.float32


def forward(scores: torch.Tensor, log_obs: torch.Tensor, t0: int, fresh: torch.Tensor | None,
            model: PyinModel) -> None:
    """Viterbi steps for frames ``t0 .. t0 + n - 1`` of every item, written into ``scores`` in place:
    :func:`~instrumentd.pipeline.pyin_kernels.forward`'s contract (any item and frame strides)."""
    n_items, n = log_obs.shape[:2]
    if n_items == 0 or n == 0:
        return
    band_t = model.tensors(scores.device, torch.float32)["log_band_t"].numpy()
    fresh_np = np.zeros(n_items, np.bool_) if fresh is None else fresh.numpy()
    # the loop vectorises over contiguous rows only: a frame-major store (the batch decoder's) is decoded in
    # an item-major copy (ten 3 s windows: 18 ms, against 72 ms in place and 45-52 ms in torch's steps)
    work = scores if scores.is_contiguous() else scores.contiguous()
    _compiled()[0](work.numpy(), log_obs.contiguous().numpy(), band_t, fresh_np, t0, np.float32(model.log_stay),
                   np.float32(model.log_switch), np.float32(LOG_TINY))
    if work is not scores:
        scores.copy_(work)


def backtrack(rows: torch.Tensor, overall: torch.Tensor, start_row: torch.Tensor, start_state: torch.Tensor,
              n_steps: int, row_step: int, model: PyinModel) -> torch.Tensor:
    """Trace paths back ``n_steps`` frames: :func:`~instrumentd.pipeline.pyin_kernels.backtrack`'s contract;
    int64 ``[paths, n_steps]``, oldest first."""
    out = np.empty((start_row.shape[0], n_steps), np.int64)
    if len(out) and n_steps:
        band = model.tensors(rows.device, torch.float32)["log_band"].numpy()
        _compiled()[1](rows.contiguous().numpy(), overall.numpy(), start_row.numpy(), start_state.numpy(), out,
                       row_step, model.n_bins, band, np.float32(model.log_stay), np.float32(model.log_switch),
                       np.float32(LOG_TINY))
    return torch.from_numpy(out)


@functools.cache
def _compiled() -> tuple:
    """The two loops compiled (or loaded from numba's cache): ``(forward, backtrack)``."""
    import numba

    njit = numba.njit(cache=True, nogil=True)
    return njit(_forward), njit(_backtrack)


def _forward(scores, obs, band_t, fresh, t0, log_stay, log_switch, log_tiny):
    """Frames ``t0 ..`` of every item (see :func:`forward`), compiled by :func:`_compiled`."""
    n_items, n, _, n_bins = obs.shape
    width = band_t.shape[0]
    half = width // 2
    ninf = np.float32(-np.inf)
    acc_v, acc_u = np.empty(n_bins, np.float32), np.empty(n_bins, np.float32)
    to_v, to_u = np.empty(n_bins, np.float32), np.empty(n_bins, np.float32)
    for item in range(n_items):
        for i in range(n):
            prev = scores[item, t0 + i - 1]
            acc_v[:] = ninf
            acc_u[:] = ninf
            for d in range(width):  # padded column j + d is source bin j + d - half
                voiced, unvoiced, band = prev[0, d : d + n_bins], prev[1, d : d + n_bins], band_t[d]
                for j in range(n_bins):
                    acc_v[j] = max(acc_v[j], voiced[j] + band[j])
                    acc_u[j] = max(acc_u[j], unvoiced[j] + band[j])
            start = i == 0 and fresh[item]  # a stream's first frame: its observation alone
            for j in range(n_bins):
                ov, ou = obs[item, i, 0, j], obs[item, i, 1, j]
                if start:
                    to_v[j], to_u[j] = ov, ou
                else:
                    to_v[j] = max(max(acc_v[j] + log_stay, acc_u[j] + log_switch), log_tiny) + ov
                    to_u[j] = max(max(acc_v[j] + log_switch, acc_u[j] + log_stay), log_tiny) + ou
            best = max(to_v.max(), to_u.max())
            out = scores[item, t0 + i]
            for j in range(n_bins):
                out[0, half + j] = to_v[j] - best
                out[1, half + j] = to_u[j] - best


def _backtrack(rows, overall, start_row, start_state, out, row_step, n_bins, band, log_stay, log_switch, log_tiny):
    """Each path's ``out.shape[1]`` earlier states, oldest first (see :func:`backtrack`), compiled by
    :func:`_compiled`."""
    n_paths, n_steps = out.shape
    width = band.shape[1]
    half = width // 2
    for path in range(n_paths):
        row, state = start_row[path], start_state[path]
        for k in range(n_steps):
            row -= row_step
            # as Python's % and //: a stream's first frames trace into empty (all -inf) history rows,
            # whose best "state" lies in the margin, below 0; those frames are never returned
            pitch = state % n_bins
            to_unvoiced = 1 if state < 0 else state // n_bins
            best, arg = np.float32(-np.inf), 0
            for source_row in range(2):
                switch = log_stay if source_row == to_unvoiced else log_switch
                for d in range(width):
                    candidate = (rows[row, source_row, pitch + d] + band[pitch, d]) + switch
                    if candidate > best:  # ties to the lowest state
                        best, arg = candidate, source_row * width + d
            state = overall[row] if best < log_tiny else (arg // width) * n_bins + pitch + arg % width - half
            out[path, n_steps - 1 - k] = state
