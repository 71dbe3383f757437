"""Streaming pYIN: many audio streams, fed chunks of any size, advanced together as one batch.

Each push cuts the frames that the new samples complete, scores them with the batch engine's
steps (:mod:`instrumentd.pipeline.pyin`), runs one Viterbi step per frame for all streams at once,
and finalises every frame that lies ``lag`` frames behind the newest: frame ``t`` takes the state
that the best path into frame ``t + lag`` passes through (online fixed-lag Viterbi). The work of a
push is proportional to the new audio, never to the stream's length. At the end of a stream,
:meth:`StreamingPyin.flush` pads it as ``librosa.pyin(center=True)`` does and backtracks the rest.

>>> sp = StreamingPyin()
>>> a = sp.add_stream()
>>> f0 = sp.push({a: chunk})[a]      # float32 [k] hz, NaN unvoiced, frames numbered from 0
>>> tail = sp.flush(a)
"""

from __future__ import annotations

import heapq

import numpy as np
import torch

from . import pyin_kernels
from .config import DEFAULT, FeatureConfig
from .errors import ParameterError
from .pyin import (
    best_state, decoder_kernels, frame_observations, log_observations, normalise, padded_scores, predecessor,
    viterbi_step,
)
from .pyin_model import PyinModel, pyin_model

__all__ = ["StreamingPyin"]

_NO_FRAMES = np.zeros(0, np.float32)
MAX_STEP_SECONDS = 5.0  # seconds: longer chunks are fed in pieces, which bounds the memory of one step


class StreamingPyin:
    """Incremental pYIN for many streams at once, with ``librosa.pyin``'s settings from ``cfg``.

    Parameters
    ----------
    cfg : feature configuration: sample rate, fmin, fmax, pitch frame length and hop
    lag : frames of look-ahead before a frame is finalised (latency ``lag * hop`` samples)
    device : where the streams' state lives and the maths runs
    """

    def __init__(self, cfg: FeatureConfig = DEFAULT, lag: int = 20, device: torch.device | str = "cpu"):
        if not isinstance(lag, int) or lag < 1:
            raise ParameterError(f"lag must be a positive number of frames, got {lag!r}")
        self.cfg = cfg
        self.lag = lag
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.model: PyinModel = pyin_model(
            cfg.sample_rate, cfg.pitch_fmin, cfg.pitch_fmax, cfg.pitch_frame_length, cfg.hop_length
        )
        if self.device.type == "cuda" and pyin_kernels.AVAILABLE:
            pyin_kernels.compile_forward(self.device, self.model)  # each layout, before a push needs it
        self._freqs = self.model.freqs.astype(np.float32)
        self._in_use: list[bool] = []
        self._free: list[int] = []  # free slots, each fresh (as a stream before its first sample); a heap
        self._grow(8)

    # ---- slots -------------------------------------------------------------------------------

    def add_stream(self) -> int:
        """Start a new stream; returns its slot id."""
        if not self._free:
            self._grow(2 * len(self._in_use))
        slot = heapq.heappop(self._free)
        self._in_use[slot] = True
        return slot

    def remove_stream(self, slot: int) -> None:
        """Forget a stream; its frames not yet finalised are dropped (use :meth:`flush` to get them)."""
        self._check_slot(slot)
        self._in_use[slot] = False
        self._reset([slot])
        heapq.heappush(self._free, slot)

    @property
    def streams(self) -> list[int]:
        """Slot ids in use."""
        return [i for i, used in enumerate(self._in_use) if used]

    # ---- audio in, f0 out ---------------------------------------------------------------------

    def push(self, chunks: dict[int, np.ndarray | torch.Tensor]) -> dict[int, np.ndarray]:
        """Feed new samples to some streams, all advanced as one batch.

        Parameters
        ----------
        chunks : slot -> float32 [n] new samples at ``cfg.sample_rate`` (any n >= 0, may differ per slot);
            a tensor may already live on ``device``

        Returns
        -------
        slot -> float32 [k] f0 in hz (NaN unvoiced) of the frames finalised by this push, in order.
        Frame ``t`` of a stream is centred at its sample ``t * hop``; frames are numbered from 0 without
        gaps across pushes.
        """
        for slot in chunks:
            self._check_slot(slot)
        slots = list(chunks)
        audio = self._to_device([self._as_tensor(chunks[s], s) for s in slots])
        lengths = [a.shape[0] for a in audio]
        step = max(1, int(MAX_STEP_SECONDS * self.cfg.sample_rate))
        if max(lengths, default=0) <= step:  # the usual case: one batched step, no slicing
            live = [i for i, n in enumerate(lengths) if n]
            decided = self._advance([slots[i] for i in live], [audio[i] for i in live]) if live else []
            out = dict.fromkeys(slots, _NO_FRAMES)
            out.update(zip((slots[i] for i in live), decided))
            return out
        parts: dict[int, list[np.ndarray]] = {s: [] for s in slots}
        for start in range(0, max(lengths), step):
            live = [i for i, n in enumerate(lengths) if n > start]
            decided = self._advance([slots[i] for i in live], [audio[i][start : start + step] for i in live])
            for i, f0 in zip(live, decided):
                parts[slots[i]].append(f0)
        return {s: np.concatenate(v) if v else _NO_FRAMES for s, v in parts.items()}

    def flush(self, slot: int) -> np.ndarray:
        """End a stream: ``float32 [k]`` f0 of all its frames not yet returned, then the slot starts afresh.

        The stream is padded with ``frame_length // 2`` zeros, as ``librosa.pyin(center=True)``,
        so a stream of ``n`` samples yields ``1 + n // hop`` frames in all.
        """
        return self.flush_many([slot])[slot]

    def flush_many(self, slots: list[int]) -> dict[int, np.ndarray]:
        """:meth:`flush` for several streams at once (streams that end together: one padding step and
        one backtrack for all of them): slot -> ``float32 [k]``."""
        for slot in slots:
            self._check_slot(slot)
        if not slots:
            return {}
        m, dev, lag = self.model, self.device, self.lag
        pad = torch.zeros(m.frame_length // 2, device=dev)
        heads = self._advance(list(slots), [pad] * len(slots))
        history = self._history[torch.tensor(slots, device=dev)]  # [streams, lag, 2, padded]: frames n - lag .. n - 1
        rows = history.flatten(0, 1)
        overall = best_state(history, m).flatten()  # [streams * lag]
        row = torch.arange(len(slots), device=dev) * lag + lag - 1
        state = overall[row]
        states = [state]
        for _ in range(lag - 1):  # every stream back to its oldest kept frame; each keeps its own last frames
            row = row - 1
            state = predecessor(rows, overall, row, state, m)
            states.append(state)
        f0 = self._states_to_f0(torch.stack(states[::-1], 1))  # [streams, lag]
        out = {}
        for i, slot in enumerate(slots):
            rest = min(int(self._n_frames[slot]), lag)
            out[slot] = np.concatenate([heads[i], f0[i, lag - rest :]])
        self._reset(slots)
        return out

    # ---- internals -----------------------------------------------------------------------------

    def _grow(self, capacity: int) -> None:
        """Room for ``capacity`` slots, the new ones fresh (:meth:`_reset` once for all); existing state is kept."""
        old = len(self._in_use)
        m, dev = self.model, self.device
        shapes = {
            "_buffer": ((m.frame_length,), torch.float32),  # samples from the next frame's start
            # normalised Viterbi scores of the newest `lag` frames, oldest first, in padded_scores' layout
            "_history": ((self.lag, 2, m.n_bins + m.width - 1), torch.float32),
        }
        for name, (shape, dtype) in shapes.items():
            new = torch.zeros((capacity, *shape), dtype=dtype, device=dev)
            if old:
                new[:old] = getattr(self, name)
            setattr(self, name, new)
        for name in ("_fill", "_n_frames"):  # valid samples in _buffer; frames scored so far (host side)
            setattr(self, name, np.concatenate([getattr(self, name, np.zeros(0, np.int64)),
                                                np.zeros(capacity - old, np.int64)]))
        self._in_use.extend([False] * (capacity - old))
        for slot in range(old, capacity):
            heapq.heappush(self._free, slot)
        self._reset(list(range(old, capacity)))

    def _reset(self, slots: list[int]) -> None:
        """Start these slots afresh, as a stream before its first sample."""
        idx = torch.tensor(slots, device=self.device)
        self._buffer[idx] = 0.0
        self._fill[slots] = self.model.frame_length // 2  # centring: frame 0 starts half a frame early
        self._n_frames[slots] = 0
        self._history[idx] = padded_scores(
            len(idx), self.lag, model=self.model, device=self.device, dtype=torch.float32
        )

    def _check_slot(self, slot: int) -> None:
        if not (isinstance(slot, (int, np.integer)) and 0 <= slot < len(self._in_use) and self._in_use[slot]):
            raise ParameterError(f"no stream in slot {slot!r}; streams in use: {self.streams}")

    def _as_tensor(self, chunk: np.ndarray | torch.Tensor, slot: int) -> torch.Tensor:
        if not isinstance(chunk, torch.Tensor):
            chunk = torch.as_tensor(chunk)
        if chunk.ndim != 1 or not (chunk.is_floating_point() or chunk.shape[0] == 0):
            raise ParameterError(
                f"chunk for slot {slot} must be float samples of shape [n], got {chunk.dtype} {tuple(chunk.shape)}"
            )
        return chunk

    def _to_device(self, chunks: list[torch.Tensor]) -> list[torch.Tensor]:
        """The chunks as float32 on :attr:`device`; those elsewhere go over in one copy (through
        page-locked memory to a GPU)."""
        out = [c if c.dtype == torch.float32 else c.to(torch.float32) for c in chunks]
        away = [i for i, c in enumerate(out) if c.device != self.device]
        if away:
            sizes = [out[i].shape[0] for i in away]
            host = torch.empty(sum(sizes), pin_memory=self.device.type == "cuda")
            torch.cat([out[i].cpu() for i in away], out=host)
            joined = host.to(self.device, non_blocking=True)
            for i, part in zip(away, joined.split(sizes)):
                out[i] = part
        return out

    def _states_to_f0(self, states: torch.Tensor) -> np.ndarray:
        states = states.cpu().numpy()
        n_bins = self.model.n_bins
        return np.where(states < n_bins, self._freqs[states % n_bins], np.float32(np.nan)).astype(np.float32)

    def _advance(self, slots: list[int], audio: list[torch.Tensor]) -> list[np.ndarray]:
        """Append ``audio[i]`` to stream ``slots[i]``, score the completed frames, return the finalised f0.

        Frame counts are kept on the host, so the only wait for the device is the f0 copy at the end
        (and, with the torch steps off CUDA, the trough count inside
        :func:`~instrumentd.pipeline.pyin.observations`).
        """
        m, dev, lag = self.model, self.device, self.lag
        width, hop, n_bins = m.frame_length, m.hop_length, m.n_bins
        n_streams = len(slots)
        lengths = np.array([a.shape[0] for a in audio], np.int64)
        fill, n_done = self._fill[slots], self._n_frames[slots]
        total = fill + lengths
        n_new = np.where(total >= width, (total - width) // hop + 1, 0)
        most = int(n_new.max())
        starts = np.cumsum(lengths) - lengths
        # one upload for every per-stream number: slot, pending samples, first new sample, new frames
        meta = torch.from_numpy(np.stack([np.asarray(slots, np.int64), fill, starts, lengths, n_new])).to(dev)
        idx, fill_d, starts_d, lengths_d, n_new_d = meta

        # the stream's pending samples, then the new ones, one row per stream: column c of row s is
        # pending sample c below fill[s], else new sample c - fill[s] while that exists, else 0
        flat = torch.cat(audio) if len(audio) > 1 else audio[0]
        column = torch.arange(int(total.max()) + width, device=dev)
        new_pos = column - fill_d[:, None]
        in_new = (new_pos >= 0) & (new_pos < lengths_d[:, None])
        source = (starts_d[:, None] + new_pos).clamp(0, len(flat) - 1)  # every call brings some audio
        rows = torch.where(in_new, flat[source], 0.0)
        pending = self._buffer[idx]
        rows[:, :width] = torch.where(column[:width] < fill_d[:, None], pending, rows[:, :width])
        keep_from = (n_new_d * hop)[:, None] + torch.arange(width, device=dev)
        self._buffer[idx] = rows.gather(1, keep_from)
        self._fill[slots] = total - n_new * hop
        if most == 0:
            return [_NO_FRAMES] * n_streams

        # only each stream's own new frames are scored (indices made on the host: no device round trip);
        # rows past them stay 0 and are never read
        which = np.repeat(np.arange(n_streams), n_new)
        index = torch.from_numpy(np.stack([which, np.arange(len(which)) - np.repeat(np.cumsum(n_new) - n_new, n_new)]))
        stream_i, frame_i = index.to(dev)
        frames = rows.unfold(1, width, hop)[stream_i, frame_i]  # [new frames, frame_length]
        scored_v, scored_p = frame_observations(frames, m)
        log_v = torch.zeros(n_streams, most, n_bins, device=dev)
        voiced_prob = torch.zeros(n_streams, most, device=dev)
        log_v[stream_i, frame_i], voiced_prob[stream_i, frame_i] = scored_v, scored_p
        log_obs = log_observations(log_v, voiced_prob, m)  # [streams, most, 2, n_bins]

        # history position p holds frame n_done - lag + p; positions lag + i are the new frames
        history = torch.cat(
            [self._history[idx], padded_scores(n_streams, most, model=m, device=dev, dtype=torch.float32)], 1
        )
        fresh = torch.from_numpy(n_done == 0).to(dev)
        kernels = decoder_kernels(history)
        if kernels is not None:
            kernels.forward(history, log_obs, lag, fresh, m)
        else:
            for i in range(most):
                stepped = viterbi_step(history[:, lag + i - 1], log_obs[:, i], m)
                if i == 0:
                    stepped = torch.where(fresh[:, None, None], log_obs[:, i], stepped)
                normalise(stepped, history[:, lag + i], m)

        # new frame i finalises frame n_done + i - lag: trace its best path back `lag` frames, all at once
        overall = best_state(history, m).flatten()  # [streams * (lag + most)]
        row = torch.arange(n_streams, device=dev)[:, None] * (lag + most) + lag + torch.arange(most, device=dev)
        row = row.flatten()
        rows = history.flatten(0, 1)
        if kernels is not None:
            state = kernels.backtrack(rows, overall, row, overall[row], lag, 1, m)[:, 0]
        else:
            state = overall[row]
            for _ in range(lag):
                row = row - 1
                state = predecessor(rows, overall, row, state, m)
        state = state.reshape(n_streams, most)
        keep = n_new_d[:, None] + torch.arange(lag, device=dev)
        self._history[idx] = history[torch.arange(n_streams, device=dev)[:, None], keep]
        self._n_frames[slots] = n_done + n_new

        f0 = self._states_to_f0(state)
        first_out = np.maximum(lag - n_done, 0)
        return [f0[s, first_out[s] : max(first_out[s], n_new[s])] for s in range(n_streams)]
