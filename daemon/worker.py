"""The worker: ring buffers -> 44.1 kHz -> incremental features -> one batched forward pass per step.

One worker per device. Each :meth:`Worker.step` reads every stream whose next window is complete,
resamples it (``soxr.ResampleStream``, per stream), pushes all the new audio through
:class:`~instrumentd.pipeline.stream_features.StreamFeatures` in one batch, builds the windows that
are due and runs them through the network as one batch.

Windows of a stream start on its frame grid: window ``j`` after the stream's grid origin ``g``
starts at frame ``g + round(j * hop / 30 ms)`` and covers 100 frames (exactly 3 s), so windows
come every ``hop`` on average, each start within 15 ms of ``j * hop``.

Overload: a live stream (``mic``, ``file:``) whose unread audio exceeds a window, a hop and
``max_backlog`` skips to its newest audio (the skipped audio and the windows it would have made are
counted as drops) and its features start over there, so its next window comes 3 s later; a due window older than ``max_backlog`` is dropped
and counted. Memory is fixed by the ring sizes and the features' history, whatever the load.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time

import numpy as np
import soxr

from instrumentd.pipeline.config import FeatureConfig
from instrumentd.pipeline.stream_features import StreamFeatures

from .segments import Segmenter
from .sources import Source

PITCH_LOOKAHEAD = 2  # frames past a window's end before pYIN can finalise its last frame (2048-sample half frame)
LATENCY_HISTORY = 1000  # windows behind the p50/p99 of a stream's status


@dataclasses.dataclass
class Window:
    """One due window: ``probabilities`` is filled by the forward pass."""

    stream: "Stream"
    start_frame: int
    t_start: float  # seconds of stream time
    t_end: float
    arrival: float  # time.monotonic() when its last sample arrived
    probabilities: np.ndarray | None = None


class Stream:
    """One named stream inside a worker: its source, resampler, features slot, window grid and counters."""

    def __init__(self, source: Source, slot: int, cfg: FeatureConfig, hop_s: float, segmenter: Segmenter):
        self.name = source.name
        self.source = source
        self.slot = slot
        self.cfg = cfg
        self.rate = source.ring.rate
        self.resampler = None if self.rate == cfg.sample_rate else soxr.ResampleStream(
            self.rate, cfg.sample_rate, 1, dtype="float32", quality="HQ")
        self.hop_frames = hop_s * cfg.sample_rate / cfg.hop_length  # frames per window hop, not an integer
        self.segmenter = segmenter
        self.grid_origin = 0  # frame where window 0 of the current grid starts
        self.j = 0  # next window on the grid
        self.pos = 0  # 44.1 kHz grid index of the next sample to push
        self.native_next = 0  # ring index of the next sample to read
        self.anchor = (0, 0)  # (native index, grid index) of the same instant, set at each reset
        self.windows = 0
        self.dropped_windows = 0
        self.latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_HISTORY)
        self.level_db: float | None = None
        self.finished = False
        self.next_check = 0.0  # time.monotonic() before which a live stream cannot have its next window

    def start_frame(self, j: int) -> int:
        return self.grid_origin + int(round(j * self.hop_frames))

    def window_end_sample(self) -> int:
        """Grid index one past the last sample of the next window."""
        return (self.start_frame(self.j) + self.cfg.n_frames) * self.cfg.hop_length

    def native_index(self, grid_index: int) -> int:
        native0, grid0 = self.anchor
        return native0 + int(math.ceil((grid_index - grid0) * self.rate / self.cfg.sample_rate))

    def latency_percentiles(self) -> tuple[float | None, float | None]:
        if not self.latencies:
            return None, None
        p50, p99 = np.percentile(np.fromiter(self.latencies, float), [50, 99])
        return round(float(p50), 2), round(float(p99), 2)


class Worker:
    """Runs the streams it is given on one device.

    Parameters
    ----------
    recognizer : the loaded network (its device is the worker's device)
    features : incremental features on the same device
    hop_s : seconds between windows
    max_backlog : seconds a live stream may fall behind before stale audio and windows are dropped
    pitch_policy : ``hold`` or ``delay`` (see :mod:`instrumentd.pipeline.stream_features`)
    pitch_lag : the pitch engine's lag in frames (how far ``delay`` waits past a window's end)
    """

    def __init__(self, recognizer, features: StreamFeatures, hop_s: float, max_backlog: float = 1.0,
                 pitch_policy: str = "hold", pitch_lag: int = 20):
        self.recognizer = recognizer
        self.features = features
        self.cfg = features.cfg
        self.hop_s = hop_s
        self.max_backlog = max_backlog
        self.policy = pitch_policy
        self.wait_frames = 0 if pitch_policy == "hold" else pitch_lag + PITCH_LOOKAHEAD
        self.max_read_s = self.cfg.clip_seconds + hop_s + 0.5
        self.streams: list[Stream] = []
        self.seconds = collections.Counter()  # stage -> seconds spent: read, mel, pitch, windows, model

    @staticmethod
    def history_frames(cfg: FeatureConfig, hop_s: float, pitch_lag: int) -> int:
        """Frames of history :class:`StreamFeatures` must keep for this worker's reads."""
        read_s = cfg.clip_seconds + hop_s + 0.5
        return cfg.n_frames + int(read_s * cfg.sample_rate / cfg.hop_length) + pitch_lag + 2 * PITCH_LOOKAHEAD

    def warm_up(self) -> None:
        """One window of silence through features and network, so the first real window is not slow."""
        slot = self.features.add_stream()
        self.features.push({slot: np.zeros(self.cfg.clip_samples + self.cfg.hop_length, np.float32)})
        self.recognizer.predict(self.features.windows([(slot, 0)], "hold"))
        self.features.remove_stream(slot)
        self.features.seconds.update(mel=0.0, pitch=0.0)

    def add(self, source: Source, segmenter: Segmenter) -> Stream:
        stream = Stream(source, self.features.add_stream(), self.cfg, self.hop_s, segmenter)
        self.streams.append(stream)
        return stream

    @property
    def active(self) -> list[Stream]:
        return [s for s in self.streams if not s.finished]

    def step(self) -> list[Window]:
        """Process whatever is due now; returns the windows inferred, in order, probabilities filled.

        When any stream has a window due, every other stream's new audio (a frame or more) is pushed
        in the same batch: the streaming pitch engine advances all streams in one step per frame,
        so feeding them together costs little more than feeding one.
        """
        t0 = time.perf_counter()
        now = time.monotonic()
        active = self.active
        due = [st for st in active if now >= st.next_check and self._is_due(st, now)]
        chunks, ending = {}, []
        if due:
            min_take = self.cfg.hop_length
            for st in active:
                ring = st.source.ring
                if st in due or ring.closed or ring.available() * self.cfg.sample_rate >= min_take * st.rate:
                    chunk = self._take(st)
                    if len(chunk):
                        chunks[st.slot] = chunk
                if st.source.ended and st.native_next >= ring.written:
                    ending.append(st)
        self.seconds["read"] += time.perf_counter() - t0
        self.features.push(chunks)
        for st in ending:
            self.features.flush(st.slot)
        windows = []
        now = time.monotonic()
        by_slot = {st.slot: st for st in self.streams}
        for slot in {*chunks, *(st.slot for st in ending)}:
            windows += self._due(by_slot[slot], now)
        for st in ending:
            st.finished = True
        if windows:
            t1 = time.perf_counter()
            feats = self.features.windows([(w.stream.slot, w.start_frame) for w in windows], self.policy)
            t2 = time.perf_counter()
            probs = self.recognizer.predict(feats)
            self.seconds["windows"] += t2 - t1
            self.seconds["model"] += time.perf_counter() - t2
            for w, p in zip(windows, probs):
                w.probabilities = p
        self.seconds["mel"] = self.features.seconds["mel"]
        self.seconds["pitch"] = self.features.seconds["pitch"]
        return windows

    def _is_due(self, st: Stream, now: float) -> bool:
        """True if the stream's next window is complete in its ring (or its source has closed)."""
        ring = st.source.ring
        need = st.window_end_sample() + self.wait_frames * self.cfg.hop_length - st.pos
        need_native = int(math.ceil(max(0, need) * st.rate / self.cfg.sample_rate))
        avail = ring.available()
        if avail < max(1, need_native) and not ring.closed:
            if st.source.live:
                # a live source cannot deliver faster than real time: skip it until then
                st.next_check = now + (need_native - avail) / st.rate
            return False
        return True

    def _take(self, st: Stream) -> np.ndarray:
        """The stream's unread audio at 44.1 kHz (stale audio of a live stream skipped)."""
        ring = st.source.ring
        avail = ring.available()
        keep_last = None
        if st.source.live and avail > (self.hop_s + self.max_backlog + self.cfg.clip_seconds) * st.rate:
            # keep almost nothing: refilling a 3 s window from the backlog would cost three hops of
            # work at the moment the worker is already behind, and feed the overload
            keep_last = int(0.05 * st.rate)
        data, start, broken = ring.read(int(self.max_read_s * st.rate), keep_last)
        if broken or start != st.native_next:
            self._reset(st, start)
        st.native_next = start + len(data)
        if len(data):
            rms = float(np.sqrt(np.mean(np.square(data, dtype=np.float64))))
            st.level_db = round(max(-120.0, 20 * math.log10(max(rms, 1e-6))), 1)
        if st.resampler is not None:
            data = st.resampler.resample_chunk(data, last=ring.closed and ring.available() == 0)
        st.pos += len(data)
        return data

    def _reset(self, st: Stream, native_start: int) -> None:
        """Audio resumes at ring index ``native_start`` after a gap: start the features and the grid over."""
        skipped = native_start - st.native_next
        if skipped > 0:
            gap_frames = skipped * self.cfg.sample_rate / st.rate / self.cfg.hop_length / st.hop_frames
            st.dropped_windows += int(gap_frames)
        hop = self.cfg.hop_length
        origin = -(-(st.pos + int(round(max(0, skipped) * self.cfg.sample_rate / st.rate))) // hop)
        st.pos = origin * hop
        st.grid_origin, st.j = origin, 0
        st.anchor = (native_start, st.pos)
        if st.resampler is not None:
            st.resampler.clear()
        self.features.reset(st.slot, origin)
        st.segmenter.reset()

    def _due(self, st: Stream, now: float) -> list[Window]:
        out = []
        hop_len, sr = self.cfg.hop_length, self.cfg.sample_rate
        while self.features.window_ready(st.slot, st.start_frame(st.j), self.policy):
            f = st.start_frame(st.j)
            st.j += 1
            end = (f + self.cfg.n_frames) * hop_len
            arrival = st.source.ring.arrival(st.native_index(end - 1))
            if st.source.live and now - arrival > self.max_backlog:
                st.dropped_windows += 1
                continue
            out.append(Window(st, f, f * hop_len / sr, end / sr, arrival))
        return out
