"""``instrumentd bench tag``: archive tagging (``classify --segments``) throughput.

Two folders of generated audio (harmonic notes in noise, so that pYIN has voiced frames to track):
many short files, where batching windows across files matters, and one long file. Each is tagged
by :func:`instrumentd.clients.archive.tag_files`; the short files also one file at a time, as
plain ``classify`` does, for comparison. Time is split into decoding (the reader thread's wait),
features (mel + pitch) and the network.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from . import BenchResult

SR = 44100  # hz
HOP_S = 1.5  # seconds, classify's default window hop


class _Timed:
    """Wraps a callable and adds up the seconds spent in it."""

    def __init__(self, fn: Any):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *a: Any) -> Any:
        t = time.perf_counter()
        out = self.fn(*a)
        self.seconds += time.perf_counter() - t
        return out


def tag(device: Any, quick: bool, args: argparse.Namespace) -> Any:
    import soundfile
    import torch

    from instrumentd.model.recognizer import Recognizer
    from instrumentd.pipeline import FeatureExtractor, load_audio
    from instrumentd.pipeline.pitch import DEFAULT_ENGINE

    from instrumentd.clients.archive import BATCH, tag_files
    from instrumentd.training.tones import harmonic_notes

    n_short, short_s, long_s = (4, 10.0, 30.0) if quick else (48, 10.0, 600.0)
    rec = Recognizer.from_checkpoint(device=device, batch_size=BATCH.get(device.type, 64))
    rows = []
    with tempfile.TemporaryDirectory(prefix="instrumentd-bench-tag-") as tmp:
        short = [Path(tmp) / f"short-{i:03d}.flac" for i in range(n_short)]
        for i, f in enumerate(short):
            soundfile.write(f, harmonic_notes(short_s, SR, note_s=0.4, peak=0.45, seed=i), SR)
        long = [Path(tmp) / "long.flac"]
        soundfile.write(long[0], harmonic_notes(long_s, SR, note_s=0.4, peak=0.45, seed=999), SR)
        cases = (("short, batched", short, n_short * short_s), ("long file", long, long_s))
        for name, files, seconds in cases:
            extractor = FeatureExtractor(rec.features, DEFAULT_ENGINE, rec.device)
            features, model = _Timed(extractor), _Timed(rec.predict)
            timed = Recognizer(rec.model, rec.meta, rec.device, rec.batch_size)
            timed.predict = model
            tag_files(files[:1], timed, features, HOP_S).__next__()  # warm-up: first CUDA calls, allocator
            features.seconds = model.seconds = 0.0
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            windows = sum(r["windows"] for r in tag_files(files, timed, features, HOP_S))
            wall = time.perf_counter() - t
            rows.append(_row(name, len(files), seconds, windows, wall, features.seconds, model.seconds))
        # the same short files one at a time, as plain classify does: small batches, no reader thread
        extractor = FeatureExtractor(rec.features, DEFAULT_ENGINE, rec.device)
        t = time.perf_counter()
        windows = sum(len(rec.classify_clip(load_audio(f), extractor, HOP_S).window_probs) for f in short)
        rows.append(_row("short, 1 by 1", n_short, n_short * short_s, windows,
                         time.perf_counter() - t, float("nan"), float("nan")))
    summary = {
        "pitch_engine": DEFAULT_ENGINE,
        "batch_size": rec.batch_size,
        "short_x_realtime": rows[0]["x real time"],
        "long_x_realtime": rows[1]["x real time"],
        "one_at_a_time_x_realtime": rows[2]["x real time"],
    }
    return BenchResult(f"archive tagging, {HOP_S} s hop, pitch engine {DEFAULT_ENGINE}", rows, summary)


def _row(name: str, files: int, audio_s: float, windows: int, wall: float, features_s: float,
         model_s: float) -> dict[str, Any]:
    return {"case": name, "files": files, "audio s": audio_s, "windows": windows, "wall s": round(wall, 2),
            "feat s": round(features_s, 2), "model s": round(model_s, 2),
            "win/s": round(windows / wall, 1), "x real time": round(audio_s / wall, 1)}
