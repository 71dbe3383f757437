"""``instrumentd bench KIND``: benchmarks, each a function in the package it measures.

A benchmark is ``fn(device: torch.device, quick: bool, args: argparse.Namespace) -> BenchResult``,
named in :data:`BENCHES` as ``"module:function"``. The command prints its rows as a table and,
with ``--json``, one JSON object as the last line: the summary plus device, date and commit.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

BENCHES: dict[str, str] = {
    "model": "instrumentd.model.bench:model",
    "stream": "instrumentd.daemon.bench:stream",
    "features": "instrumentd.pipeline.bench_features:features",
    "pitch": "instrumentd.pipeline.bench:pitch",
    "prepare": "instrumentd.training.bench:prepare",
    "train": "instrumentd.training.bench:train_bench",
    "tag": "instrumentd.clients.bench_tag:tag",
    "change": "instrumentd.clients.bench_change:change",
    "bridge": "instrumentd.clients.bench_bridge:bridge",
    "serve": "instrumentd.clients.bench_serve:serve",
    "ingest": "instrumentd.clients.bench_serve:ingest",
}


@dataclasses.dataclass
class BenchResult:
    """``rows``: one dict per measured configuration (same keys in each); ``summary``: the JSON object."""

    title: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure speed: " + ", ".join(BENCHES),
        description=(
            "Run a benchmark and print a table; with --json the last line printed is one JSON object "
            "with the device, date, commit and the benchmark's figures. References (librosa, eager "
            "fp32) are measured in the same run, so ratios compare like with like."
        ),
    )
    p.add_argument("kind", choices=sorted(BENCHES), help="what to measure")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    p.add_argument("--quick", action="store_true", help="small sizes: finishes within a minute on a 2-core CPU")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--devices", default=None, help="for 'stream': 'all' or a comma list of devices to spread over")
    p.add_argument("--processes", type=int, default=1, metavar="K",
                   help="for 'stream': split the streams over K daemon processes on the device, as "
                        "'instrumentd serve --processes K' runs them (default: 1)")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="for 'train': run N whole epochs of the protocol's default precision and time them all "
                        "(default: 2 epochs per precision, the last one timed and extrapolated)")
    p.add_argument("--inference", default="auto", metavar="MODE",
                   help="for 'stream': the network path on a GPU, auto (calibrated once) or a fixed mode "
                        "such as compile-fp16-tail (a wrong name lists them)")
    p.add_argument("--sources", default=None, metavar="N,N,...",
                   help="for 'serve' and 'ingest': source counts to run (default 8,16,32 and 4,16,32)")
    p.add_argument("--seconds", type=float, default=None, help="for 'serve' and 'ingest': seconds measured per count")
    p.set_defaults(run=run)


def device_name(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent.parent, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from instrumentd.model.recognizer import resolve_device

    device = resolve_device(args.device)
    module, func = BENCHES[args.kind].split(":")
    result: BenchResult = getattr(importlib.import_module(module), func)(device, args.quick, args)
    table = Table(title=f"{result.title} — {device_name(device)}")
    for key in result.rows[0] if result.rows else []:
        table.add_column(key, justify="right")
    for row in result.rows:
        table.add_row(*(f"{v:,.3f}" if isinstance(v, float) else str(v) for v in row.values()))
    Console(stderr=args.json).print(table)
    if args.json:
        summary = {
            "bench": args.kind,
            "device": device_name(device),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": _commit(),
            "quick": args.quick,
            **result.summary,
        }
        print(json.dumps(summary), flush=True)
    return 0
