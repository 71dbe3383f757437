"""``instrumentd bench model``: windows per second through the network on every inference path.

Each path of :mod:`instrumentd.model.fast` (eager fp32, the reference; fp16 and bf16 autocast;
channels_last; CUDA graphs; torch.compile) is built for the default checkpoint's network,
checked against eager fp32 on realistic inputs and timed at several batch sizes in the same run.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

import torch

from instrumentd.model.fast import (
    COMPILE_MODE,
    PROB_TOLERANCE,
    TOP1_AGREEMENT,
    FastRecognizer,
    agreement,
    realistic_inputs,
)
from instrumentd.model.recognizer import Recognizer
from instrumentd.pipeline.timing import time_call

from . import BenchResult

__all__ = ["model"]

TARGET_WINDOWS_PER_S = 100_000  # one H100, best path
TARGET_SINGLE_WINDOW_MS = 0.5  # one H100, batch 1


def _plan(device: torch.device, quick: bool) -> tuple[tuple[str, ...], tuple[int, ...], int, float]:
    """Modes, batch sizes, windows for the agreement check and seconds per timing."""
    if device.type == "cuda":
        if quick:
            return (("eager", "fp16", "fp16-tail", "bf16", "channels_last", "graphs", "graphs-fp32", "compile",
                     "compile-fp16-tail"), (1, 64, 1024), 1024, 0.3)
        return (("eager", "fp16", "fp16-tail", "bf16", "channels_last", "graphs", "graphs-fp32", "compile",
                 "compile-fp16-tail", "compile-fp32"),
                (1, 16, 256, 1024, 4096), 4096, 1.0)
    # a 2-core CPU needs about 15 ms a window in eager fp32; compiling there takes about a minute
    if quick:
        return ("eager", "channels_last"), (1, 8), 8, 0.3
    return ("eager", "bf16", "channels_last", "compile"), (1, 16, 64), 64, 1.0


def model(device: torch.device, quick: bool, args: argparse.Namespace):
    recognizer = Recognizer.from_checkpoint(device=device)
    modes, batches, n_check, min_seconds = _plan(device, quick)
    mel, mask = realistic_inputs(n_check, recognizer.features.n_mels, recognizer.features.n_frames, device, seed=2)
    rows, paths, failed = [], {}, {}
    reference = None
    for mode in modes:
        t0 = time.perf_counter()
        fast = FastRecognizer.from_recognizer(recognizer, mode, max_batch=max(batches))
        build_s = time.perf_counter() - t0
        print(f"bench model: {mode} -> {fast.path.name}, built in {build_s:.1f} s", file=sys.stderr, flush=True)
        if mode != "eager" and fast.path.name == "fp32+eager":
            failed[mode] = fast.calibration[0]["error"] if fast.calibration else "fell back to eager fp32"
            continue
        probs = fast.predict(mel, mask)
        if reference is None:
            reference = probs
        top1, diff = agreement(probs, reference)
        ok = top1 >= TOP1_AGREEMENT and diff <= PROB_TOLERANCE
        paths[fast.path.name] = {"mode": mode, "build_s": round(build_s, 3), "cuda_graphs": fast.uses_graphs,
                                 "top1_agreement": top1, "max_prob_diff": diff, "ok": ok}
        predict = fast.predict
        for b in batches:
            sec = time_call(lambda: predict(mel[:b], mask[:b]), device, min_seconds)
            rows.append({"path": fast.path.name, "batch": b, "ms_per_batch": sec * 1e3, "windows_per_s": b / sec,
                         "top1_agreement": top1, "max_prob_diff": diff, "ok": ok})
        fast = predict = probs = None  # free its CUDA graphs before the next path is built
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    good = [r for r in rows if r["ok"]]
    best = max(good, key=lambda r: r["windows_per_s"])
    single = min((r for r in good if r["batch"] == 1), key=lambda r: r["ms_per_batch"])
    eager = max((r for r in rows if r["path"] == "fp32+eager"), key=lambda r: r["windows_per_s"])
    summary = {
        "windows_per_s": best["windows_per_s"],
        "best_path": best["path"],
        "best_batch": best["batch"],
        "single_window_ms": single["ms_per_batch"],
        "single_window_path": single["path"],
        "eager_fp32_windows_per_s": eager["windows_per_s"],
        "speedup_vs_eager": best["windows_per_s"] / eager["windows_per_s"],
        "target_windows_per_s": TARGET_WINDOWS_PER_S,
        "target_single_window_ms": TARGET_SINGLE_WINDOW_MS,
        "agreement_windows": n_check,
        "compile_mode": COMPILE_MODE,
        "paths": paths,
        "failed": failed,
        "rows": rows,
    }
    return BenchResult("model throughput per inference path (Table 2 network, 3 s windows)", rows, summary)
