"""``instrumentd bench stream``: N real-time streams through the daemon's worker, latency and where the time goes.

One process synthesises the N streams: a pacing thread writes each stream's next block into its
live ring buffer when the wall clock says that audio has been "recorded" (block = 20 ms, 100 ms
past 100 streams), exactly as N microphones would. The streams' phases are spread evenly over one
hop, as independent sources would be. Everything after the ring buffer is the daemon's own code:
:class:`~instrumentd.daemon.worker.Worker` (resampling, incremental mel + streaming pYIN, one
batched forward pass per step), event building, the event log and the ZeroMQ publisher.

Latency is the daemon's ``latency_ms``: the last sample of a window written into its ring ->
that window's event published. A run passes when no window was dropped and p99 <= the target.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time

import numpy as np
import torch

from .config import SourceSpec
from .eventlog import EventLog
from .events import window_event
from .publisher import Publisher
from .segments import Segmenter
from .sources import Source
from .worker import Worker

HOP = 1.0  # seconds, the target's hop
TARGET_P99_MS = {"cpu": 250.0, "cuda": 100.0}
STAGES = ("read", "mel", "pitch", "windows", "model", "publish")


class _SyntheticSource(Source):
    """A live source whose ring is filled by the bench's pacing thread (no thread of its own)."""

    live = True

    def __init__(self, index: int, ring_seconds: float = 10.0):
        super().__init__(SourceSpec(f"s{index}", "mic"), 44100, ring_seconds)
        self.state = "running"

    def start(self) -> None:
        pass


def _pace(sources: list[_SyntheticSource], audio: np.ndarray, block: int, offsets: np.ndarray,
          t0: float, stop: threading.Event) -> None:
    """Write each source's audio as the clock reaches it; source i starts ``offsets[i]`` s after ``t0``."""
    sr = 44100
    written = np.zeros(len(sources), dtype=np.int64)
    starts = np.arange(len(sources)) * 7919  # each stream reads the clip from its own place
    while not stop.is_set():
        now = time.monotonic()
        for i, src in enumerate(sources):
            due = int((now - t0 - offsets[i]) * sr)
            while written[i] + block <= due:
                a = (starts[i] + written[i]) % (len(audio) - block)
                src.ring.write(audio[a : a + block], arrival=t0 + offsets[i] + (written[i] + block) / sr)
                written[i] += block
        stop.wait(block / sr / 2)


def _clip(seconds: float = 20.0) -> np.ndarray:
    """A varied test signal: notes of a scale with harmonics, a noise floor, silences."""
    sr = 44100
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    notes = 110.0 * 2 ** (rng.integers(0, 36, size=int(seconds * 4)) / 12)
    f = notes[(t * 4).astype(int)]
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = sum(0.3 / k * np.sin(k * phase) for k in (1, 2, 3)) * ((t * 4) % 1 < 0.85)
    return (x + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def run_streams(recognizer, n: int, seconds: float, policy: str = "hold", lag: int = 20) -> dict:
    """N paced streams for ``seconds``; returns latency percentiles, drops and per-stage seconds."""
    from instrumentd.pipeline.stream_features import StreamFeatures, default_pitch

    cfg = recognizer.features
    features = StreamFeatures(cfg, default_pitch(cfg, lag, recognizer.device), recognizer.device,
                              keep=Worker.history_frames(cfg, HOP, lag))
    worker = Worker(recognizer, features, HOP, max_backlog=1.0, pitch_policy=policy, pitch_lag=lag)
    worker.warm_up()
    sources = [_SyntheticSource(i) for i in range(n)]
    for src in sources:
        worker.add(src, Segmenter(recognizer.classes))
    latencies: list[float] = []
    stop = threading.Event()
    block = 882 if n <= 100 else 4410
    t0 = time.monotonic() + 0.2
    offsets = np.arange(n) * HOP / n
    pacer = threading.Thread(target=_pace, args=(sources, _clip(), block, offsets, t0, stop), daemon=True)
    with tempfile.TemporaryDirectory() as tmp:
        log = EventLog(tmp)
        publisher = Publisher(f"inproc://bench-stream-{id(worker)}", 100000)
        seq = {src.name: log.open_stream(src.name) for src in sources}
        pacer.start()
        # the first windows of every stream come due together with 3 s of audio each: a start-up
        # transient, not the steady state the target is about; counting starts 2 hops later
        measure_from = t0 + cfg.clip_seconds + 2 * HOP
        end = measure_from + seconds
        drops_before = None
        while time.monotonic() < end:
            if drops_before is None and time.monotonic() >= measure_from:
                drops_before = sum(st.dropped_windows for st in worker.streams)
                counted = len(latencies)
                worker.seconds.clear()
                features.seconds.update(mel=0.0, pitch=0.0)
            windows = worker.step()
            tp = time.perf_counter()
            for w in windows:
                st = w.stream
                st.segmenter.update(w.probabilities, w.t_start, w.t_end)
                age = time.monotonic() - w.arrival
                event = window_event(st.name, seq[st.name], w.t_start, w.t_end, time.time() - age,
                                     w.probabilities, recognizer.classes, st.segmenter.labels, age * 1000,
                                     recognizer.id, recognizer.trained)
                log.append(event)
                seq[st.name] += 1
                publisher.publish(event)
                latencies.append(event["latency_ms"])
            worker.seconds["publish"] += time.perf_counter() - tp
            if not windows:
                time.sleep(0.002)
        stop.set()
        pacer.join()
        log.close()
        publisher.socket.close(0)
    latencies = latencies[counted:]
    lat = np.array(latencies) if latencies else np.full(1, np.inf)
    expected = int(seconds / HOP) * n
    return {
        "streams": n, "policy": policy, "windows": len(latencies), "expected_windows": expected,
        "dropped_windows": sum(st.dropped_windows for st in worker.streams) - drops_before,
        "dropped_audio_s": round(sum(src.ring.dropped for src in sources) / 44100, 3),
        "p50_ms": _ms(np.percentile(lat, 50)), "p99_ms": _ms(np.percentile(lat, 99)), "max_ms": _ms(lat.max()),
        **{f"{k}_busy": round(worker.seconds[k] / seconds, 4) for k in STAGES},
    }


def _ms(value: float) -> float | None:
    """Milliseconds rounded, None when no window was published (JSON has no infinity)."""
    return round(float(value), 2) if np.isfinite(value) else None


def stream(device: torch.device, quick: bool, args: argparse.Namespace):
    """Bench entry (see clients/bench.py): rows per stream count, summary = the largest count within target."""
    from instrumentd.clients.bench import BenchResult
    from instrumentd.model.recognizer import Recognizer

    recognizer = Recognizer.from_checkpoint(None, device, batch_size=1024)
    if device.type == "cpu":
        counts = (4,) if quick else (1, 2, 4, 8)
    else:
        counts = (250, 1000) if quick else (250, 500, 1000, 1500, 2000)
    seconds = 10.0 if quick else 30.0
    target = TARGET_P99_MS[device.type]
    rows = []
    for n in counts:
        rows.append(run_streams(recognizer, n, seconds))
    if not quick:
        rows.append(run_streams(recognizer, counts[-2] if device.type == "cpu" else 1000, seconds, policy="delay"))
    for r in rows:
        r["ok"] = r["dropped_windows"] == 0 and r["dropped_audio_s"] == 0 and (r["p99_ms"] or np.inf) <= target
    passing = [r["streams"] for r in rows if r["ok"] and r["policy"] == "hold"]
    summary = {
        "hop_s": HOP, "seconds": seconds, "target_p99_ms": target,
        "max_streams_within_target": max(passing) if passing else 0,
        "pitch_engine": _pitch_name(recognizer),
        "rows": rows,
    }
    table = [{
        "streams": r["streams"], "pitch": r["policy"], "windows": f"{r['windows']}/{r['expected_windows']}",
        "dropped": r["dropped_windows"], "p50 ms": r["p50_ms"], "p99 ms": r["p99_ms"],
        "busy % (read mel pitch win model pub)": " ".join(f"{100 * r[k + '_busy']:.0f}" for k in STAGES),
        "ok": "yes" if r["ok"] else "no",
    } for r in rows]
    return BenchResult(f"stream: real-time streams, {HOP:g} s hop, latency = last sample in -> published", table,
                       summary)


def _pitch_name(recognizer) -> str:
    from instrumentd.pipeline.stream_features import default_pitch

    return type(default_pitch(recognizer.features, 20, recognizer.device)).__name__
