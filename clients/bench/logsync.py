"""``instrumentd bench logsync``: what a heartbeat's sync of the event log costs, one syncfs against an
fsync a file.

N streams each get a fresh event, then the log is synced: the ``loop ms`` is what :meth:`EventLog.sync`
takes on the caller's thread (the daemon's main loop), the ``done ms`` how long until the background
sync has finished. The two ways alternate round by round on the same log; rows give the best of
:data:`ROUNDS`. The log lives in ``--dir`` (default: the system's temporary folder), so that the disk
measured is the one named: a tmpfs syncs in no time either way.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from instrumentd.daemon import events
from instrumentd.daemon.eventlog import EventLog
from instrumentd.daemon.fsyncer import HAS_SYNCFS
from instrumentd.model.classes import CLASSES

from . import BenchResult
from .flags import parse_counts

ROUNDS = 3


def _event(stream: str, seq: int) -> dict:
    """A window event such as the daemon writes (about 400 bytes)."""
    return events.window_event(stream, seq, 3.0 * seq, 3.0 * seq + 3.0, time.time(), [1 / len(CLASSES)] * len(CLASSES),
                               CLASSES, [], 12.0, "bench", True, -20.0)


def _round(logs: dict[bool, EventLog], streams: list[str], seq: int) -> dict[bool, tuple[float, float]]:
    """One fresh event a stream in each log, then each log synced in turn: ``{way: (loop s, done s)}``."""
    out = {}
    for whole, log in logs.items():
        for s in streams:
            log.append(_event(s, seq))
        t0 = time.perf_counter()
        log.sync()
        t1 = time.perf_counter()
        log.wait_synced()
        out[whole] = (t1 - t0, time.perf_counter() - t0)
    return out


def logsync(device: torch.device, quick: bool, args: argparse.Namespace) -> BenchResult:
    """Bench entry (see clients/bench/__init__.py): a row per stream count and way of syncing."""
    counts = parse_counts(getattr(args, "streams", None), (100,) if quick else (1000, 4000), "--streams")
    ways = [False, True] if HAS_SYNCFS else [False]
    rows = []
    for n in counts:
        with tempfile.TemporaryDirectory(dir=getattr(args, "dir", None)) as folder:
            streams = [f"s{i}" for i in range(n)]
            logs = {whole: EventLog(f"{folder}/{'syncfs' if whole else 'fsync'}", whole_filesystem=whole)
                    for whole in ways}
            for log in logs.values():
                for s in streams:
                    log.open_stream(s)
            best = {whole: (float("inf"), float("inf")) for whole in ways}
            for seq in range(ROUNDS):
                for whole, (loop, done) in _round(logs, streams, seq).items():
                    best[whole] = (min(best[whole][0], loop), min(best[whole][1], done))
            for log in logs.values():
                log.close()
        for whole in ways:
            rows.append({"streams": n, "sync": "one syncfs" if whole else "fsync a file",
                         "loop_ms": round(1000 * best[whole][0], 3), "done_ms": round(1000 * best[whole][1], 1)})
    return BenchResult("Event log: a heartbeat's sync", rows, {"rounds": ROUNDS, "rows": rows})


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--streams", default=None, metavar="N,N,...",
                   help="stream counts, a row per way each (default: 1000,4000; 100 with --quick)")
    p.add_argument("--dir", default=None, metavar="FOLDER",
                   help="where the logs are written (default: the system's temporary folder)")
