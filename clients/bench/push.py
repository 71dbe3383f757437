"""``instrumentd bench push``: what one worker step's push of new audio costs, mel and pitch.

A step of the daemon's worker stages the new audio of every stream it reads and pushes it through
:class:`~instrumentd.pipeline.stream_features.StreamFeatures` in one batch: one upload, one batched
STFT for the new mel frames, one step of the streaming pYIN engine (daemon/worker.py). This bench
builds the daemon's features on the device with N streams (``--streams``), each first given 3 s of
the demo clip (a stream at its first window), then pushes the next second of K streams at a time
(each K of ``--per-push``), in turn over the N as the worker's steps take them, and times each push:

* ``ms_per_push``: wall milliseconds of staging and pushing, the device's queue drained;
* ``mel_ms``, ``pitch_ms``: the host time the features count for those stages, what the daemon's
  ``busy`` figures add up (on a GPU, the launches: the f0 stays on the device and nothing waits for it);
* ``windows_ms``: wall milliseconds of building the K pushed streams' newest windows in one batch (what
  a worker's step then hands the network), the device's queue drained; ``windows_host_ms`` the host's part.

On a GPU the pitch engine replays each step as a CUDA graph, and the features replay each mel step and
each batch of windows as one; ``--pitch-ops`` and ``--feature-ops`` run them op by op instead, as before
the graphs, for a side-by-side figure (``pitch_graphs`` and ``feature_graphs`` in each row say which).

With ``--profile``, torch's profiler runs over the pushes of the first K, and the summary lists the
operations that took the most host time, each with its device time, per push (``profile``): where a
push's milliseconds go, launches or waits.
"""

from __future__ import annotations

import argparse
import time

import torch

from instrumentd.pipeline.config import DEFAULT
from instrumentd.pipeline.demo import demo_audio
from instrumentd.pipeline.errors import ParameterError
from instrumentd.pipeline.stream_features import StreamFeatures, default_pitch
from instrumentd.pipeline.timing import sync

from . import BenchResult
from .flags import parse_counts

FIRST_PUSH = 100  # streams given their first 3 s per push while setting up
PROFILE_TOP = 15  # operations listed by --profile


def push(device: torch.device, quick: bool, args: argparse.Namespace) -> BenchResult:
    """Bench entry (see clients/bench/__init__.py): one row per K streams a push."""
    n = args.streams if args.streams is not None else 32 if quick else 1000
    if n < 1:
        raise ParameterError(f"--streams must be at least 1, got {n}")
    per_push = parse_counts(args.per_push, (4, 16) if quick else (15, 60, 250), "--per-push")
    if max(per_push) > n:
        raise ParameterError(f"--per-push {max(per_push)} needs at least as many --streams (got {n})")
    pushes = args.pushes if args.pushes is not None else 8 if quick else 40
    if pushes < 1:
        raise ParameterError(f"--pushes must be at least 1, got {pushes}")
    sr = DEFAULT.sample_rate
    audio = demo_audio(4 * sr)
    first, second = audio[: 3 * sr], audio[3 * sr :]
    pitch = default_pitch(DEFAULT, device=device, graphs=False if args.pitch_ops else None)
    features = StreamFeatures(DEFAULT, pitch, device=device, graphs=False if args.feature_ops else None)
    slots = [features.add_stream() for _ in range(n)]
    for i in range(0, n, FIRST_PUSH):
        features.push({s: first for s in slots[i : i + FIRST_PUSH]})
    turn = 0  # the next stream to push, in turn over all of them

    def one_push(k: int) -> None:
        nonlocal turn
        for i in range(k):
            features.stage(slots[(turn + i) % n], second)
        turn = (turn + k) % n
        features.push_staged()
        sync(device)

    def newest_windows(k: int) -> float:
        """Build the newest window of the last ``k`` streams pushed; returns the host's seconds."""
        pushed = [slots[(turn - k + i) % n] for i in range(k)]
        half, hop = DEFAULT.window_length // 2, DEFAULT.hop_length
        t0 = time.perf_counter()
        features.windows([(s, (features.received(s) - 1 - half) // hop + 1 - DEFAULT.n_frames) for s in pushed])
        host = time.perf_counter() - t0
        sync(device)
        return host

    rows = []
    for k in per_push:
        for _ in range(max(3, pushes // 4)):  # the FFT plans and kernels of this size, made once
            one_push(k)
        mel0, pitch0 = features.seconds["mel"], features.seconds["pitch"]
        t0 = time.perf_counter()
        for _ in range(pushes):
            one_push(k)
        wall = (time.perf_counter() - t0) / pushes
        mel, pitch_s = features.seconds["mel"] - mel0, features.seconds["pitch"] - pitch0
        for _ in range(3):  # the windows' graph of this count, captured once
            newest_windows(k)
        t0 = time.perf_counter()
        windows_host = sum(newest_windows(k) for _ in range(pushes)) / pushes
        windows_wall = (time.perf_counter() - t0) / pushes
        rows.append({
            "streams": n, "per_push": k, "ms_per_push": round(1000 * wall, 3),
            "mel_ms": round(1000 * mel / pushes, 3), "pitch_ms": round(1000 * pitch_s / pushes, 3),
            "windows_ms": round(1000 * windows_wall, 3), "windows_host_ms": round(1000 * windows_host, 3),
            "us_per_stream": round(1e6 * wall / k, 1), "pitch_graphs": pitch.graphs,
            "feature_graphs": features.graphs,
        })
    summary = {"streams": n, "pushes": pushes, "rows": rows}
    if args.profile:
        summary["profile"] = _profile(lambda: one_push(per_push[0]), pushes, device)
        summary["profile_per_push"] = per_push[0]
    return BenchResult("Feature push: one step's new audio through mel and pitch, then its windows", rows, summary)


def _profile(one_push, pushes: int, device: torch.device) -> list[dict]:
    """The :data:`PROFILE_TOP` operations with the most host time over ``pushes`` calls of ``one_push``:
    name, calls, host and device milliseconds each per push."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(pushes):
            one_push()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:PROFILE_TOP]
    return [{
        "op": e.key, "calls_per_push": round(e.count / pushes, 1),
        "host_ms": round(e.self_cpu_time_total / 1000 / pushes, 3),
        # torch names the accelerator's time "device" from 2.4 on, "cuda" before
        "device_ms": round(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0))
                           / 1000 / pushes, 3),
    } for e in events]


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--streams", type=int, default=None, metavar="N",
                   help="streams the features hold (default: 1000; 32 with --quick)")
    p.add_argument("--per-push", default=None, metavar="K,K,...",
                   help="streams pushed together, a row each (default: 15,60,250; 4,16 with --quick)")
    p.add_argument("--pushes", type=int, default=None, metavar="P",
                   help="pushes timed per row (default: 40; 8 with --quick)")
    p.add_argument("--pitch-ops", action="store_true",
                   help="run the pitch engine's steps op by op, not replayed as CUDA graphs (for comparison)")
    p.add_argument("--feature-ops", action="store_true",
                   help="run the mel steps and build the windows op by op, not replayed as CUDA graphs (for "
                        "comparison)")
    p.add_argument("--profile", action="store_true",
                   help="also run torch's profiler over the first row's pushes: the top operations' host and "
                        "device time per push, in the JSON summary")
