"""``instrumentd bench pitch``: torch pYIN against librosa.pyin on the same audio, in the same run.

Audio is the bundled demo clip (12.5 s of music at 44.1 kHz), tiled where more is needed. Agreement
is measured frame by frame against ``librosa.pyin`` with DESIGN.md's settings. On CPU both run on
one thread, so the speed-up compares like with like. Without ``--quick`` on CUDA it also times an
hour of audio as 1,200 windows of 3 s in one batch, and streaming: 1,000 streams each advanced by
0.5 s per push.
"""

from __future__ import annotations

import argparse
import time

import librosa
import numpy as np
import torch

from instrumentd.pipeline.config import DEFAULT, TEN_MS
from instrumentd.pipeline.demo import demo_audio
from instrumentd.pipeline.pitch import pyin_settings
from instrumentd.pipeline.pyin import pyin
from instrumentd.pipeline.pyin_stream import StreamingPyin
from instrumentd.pipeline.timing import sync, time_call

from . import BenchResult

__all__ = ["agreement", "pitch"]


def _demo(seconds: float) -> np.ndarray:
    """``float32 [seconds * 44100]``: the demo clip, repeated as needed."""
    return demo_audio(int(seconds * DEFAULT.sample_rate))


def agreement(ref: tuple, ours: tuple) -> tuple[float, float]:
    """``(f0, voiced)`` of librosa and of ours, ``[frames]`` each -> (share of frames whose voicing agrees,
    share of frames voiced in both whose f0 is within 10 cents)."""
    v_ref, v_our = ref[1], ours[1]
    voicing = float(np.mean(v_ref == v_our))
    both = v_ref & v_our
    cents = np.abs(1200 * np.log2(ours[0][both] / ref[0][both]))
    return voicing, float(np.mean(cents <= 10)) if both.any() else 1.0


def pitch(device: torch.device, quick: bool, args: argparse.Namespace):
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # librosa.pyin runs on one core: compare on one core
    try:
        rows, summary = _measure(device, quick)
    finally:
        torch.set_num_threads(threads)
    return BenchResult("pitch: torch pYIN vs librosa.pyin", rows, summary)


def _measure(device: torch.device, quick: bool) -> tuple[list[dict], dict]:
    seconds = 6.0 if quick else 12.5
    audio = _demo(seconds)
    rows = []
    for cfg in (DEFAULT,) if quick else (DEFAULT, TEN_MS):
        librosa.pyin(audio[: cfg.sample_rate], **pyin_settings(cfg))  # numba compiles or loads its cache once
        t0 = time.perf_counter()
        ref = librosa.pyin(audio, **pyin_settings(cfg))
        librosa_s = time.perf_counter() - t0
        on_device = torch.from_numpy(audio).to(device)
        ours_s = time_call(lambda: pyin(on_device, **pyin_settings(cfg)), device, 0.5 if quick else 2.0, warmup=1)
        ours = [x.cpu().numpy() for x in pyin(on_device, **pyin_settings(cfg))]
        voicing, cents = agreement(ref, ours)
        rows.append({
            "what": f"{seconds:g} s, hop {cfg.hop_length}", "seconds": seconds, "librosa_s": librosa_s,
            "ours_s": ours_s, "speedup": librosa_s / ours_s, "x_realtime": seconds / ours_s,
            "voicing_agree": voicing, "cents_within_10": cents,
        })
    first = rows[0]
    summary = {
        "n_seconds": seconds,
        "hop_length": DEFAULT.hop_length,
        "torch_threads": torch.get_num_threads(),
        "voicing_agreement": min(r["voicing_agree"] for r in rows),
        "cents_within_10": min(r["cents_within_10"] for r in rows),
        "speedup_vs_librosa": first["speedup"],
        "realtime_factor": first["x_realtime"],
    }
    if not quick:
        summary.update(_throughput(device, rows))
        summary.update(_streaming(device, rows))
    summary["rows"] = rows
    return rows, summary


def _throughput(device: torch.device, rows: list[dict]) -> dict:
    """An hour of audio (on CUDA; a minute on CPU) as a batch of 3 s windows."""
    n_windows = 1200 if device.type == "cuda" else 20
    windows = torch.from_numpy(_demo(3.0 * n_windows).reshape(n_windows, -1)).to(device)
    sec = time_call(lambda: pyin(windows, **pyin_settings(DEFAULT)), device, 2.0, warmup=1)
    audio_s = 3.0 * n_windows
    rows.append({"what": f"batch {n_windows} x 3 s", "seconds": audio_s,
                 "librosa_s": None, "ours_s": sec, "speedup": None, "x_realtime": audio_s / sec,
                 "voicing_agree": None, "cents_within_10": None})
    return {"batch_windows": n_windows, "batch_audio_s": audio_s, "batch_s": sec,
            "batch_realtime_factor": audio_s / sec, "hour_s": sec * 3600 / audio_s}


def _streaming(device: torch.device, rows: list[dict], push_s: float = 0.5) -> dict:
    """Many streams each advanced by ``push_s`` seconds per push; ms per push, numpy in and on-device in."""
    n_streams = 1000 if device.type == "cuda" else 8
    sp = StreamingPyin(DEFAULT, lag=20, device=device)
    slots = [sp.add_stream() for _ in range(n_streams)]
    n = int(push_s * DEFAULT.sample_rate)
    clip = _demo(push_s * 8)
    chunks = [clip[(i % 8) * n : (i % 8 + 1) * n] for i in range(8)]
    out = {}
    for label, as_input in (("numpy", lambda c: c), ("device", lambda c: torch.from_numpy(c).to(device))):
        inputs = [as_input(c) for c in chunks]
        pushes = iter(range(10**9))

        def push():
            i = next(pushes)
            sp.push({s: inputs[(i + s) % 8] for s in slots})

        sec = time_call(push, device, 2.0, warmup=3)
        sync(device)
        rows.append({"what": f"push {n_streams} x {push_s} s, {label}", "seconds": n_streams * push_s,
                     "librosa_s": None, "ours_s": sec, "speedup": None,
                     "x_realtime": n_streams * push_s / sec, "voicing_agree": None,
                     "cents_within_10": None})
        out[f"stream_push_ms_{label}"] = sec * 1e3
    out["stream_count"] = n_streams
    out["stream_push_s"] = push_s
    return out
