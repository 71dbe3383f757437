"""Archive tagging: ``instrumentd classify --segments``, per file the stretches of time in which each
instrument is predominant, from per-window probabilities batched across many files.

Files are read block by block (:class:`instrumentd.pipeline.windows.FileWindows`) and segmented by
the daemon's rule (:func:`instrumentd.daemon.segments.segment`): a moving average over the last
``smooth`` windows, an instrument starts at ``on`` and ends below ``off``. A window that names no instrument (model/decision.py: silence, speech, noise...) counts as all
probabilities 0, so talk between two pieces ends the first piece's segment.

Output: ``jsonl``, one object per file ``{"path", "duration", "windows", "segments": [{"start", "end",
"instrument", "mean_probability", "windows"}], "model", "trained"}`` (or ``{"path", "error"}``);
``csv``, one row per segment (``path,start,end,instrument,mean_probability,error``), a file with no
segment as one row with its path alone, a file that cannot be read as one row with its error.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import queue
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from instrumentd.daemon.segments import OFF, ON, SMOOTH, check_settings, segment
from instrumentd.model.decision import window_reasons
from instrumentd.pipeline.windows import FileWindows, levels_dbfs
# windows per batch: on a CPU, batches past 16 windows fall out of cache and cost 2-4x more per
# window (features and network alike, `instrumentd bench tag`); a GPU wants large ones
BATCH = {"cpu": 16, "cuda": 256}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``classify --segments``."""
    g = parser.add_argument_group("segments (with --segments)")
    g.add_argument("--segments", action="store_true",
                   help="per file, the instrument segments (start, end, instrument, mean probability) "
                        "instead of clip labels; windows of many files are batched together")
    g.add_argument("--smooth", type=int, default=SMOOTH, metavar="WINDOWS",
                   help=f"moving average over this many windows (default: {SMOOTH}, as the daemon)")
    g.add_argument("--on", type=float, default=ON, metavar="P",
                   help=f"smoothed probability at which an instrument starts (default: {ON})")
    g.add_argument("--off", type=float, default=OFF, metavar="P",
                   help=f"smoothed probability below which it ends (default: {OFF})")


# ---- tagging: many files, their windows batched together ------------------------------------------

@dataclasses.dataclass
class _File:
    """What is known about one file while its windows are in flight."""

    path: Path
    queued: int = 0  # windows handed to the batcher
    starts: list[int] = dataclasses.field(default_factory=list)  # samples, of windows already classified
    probs: list[np.ndarray] = dataclasses.field(default_factory=list)  # [n_classes] per classified window
    total: int | None = None  # samples, once the whole file is read
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.error is not None or (self.total is not None and len(self.probs) == self.queued)


def _read_ahead(files: list[Path], sr: int, window: int, hop: int, out: queue.Queue,
                stop: threading.Event) -> None:
    """Thread body: decode ``files`` in order and put ``("window", i, start, audio)``,
    ``("end", i, total)`` or ``("error", i, message)`` on ``out``, then ``("done",)``."""
    from instrumentd.pipeline.errors import AudioError

    def put(item: tuple) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        for i, path in enumerate(files):
            reader = FileWindows(path, sr, window, hop)
            try:
                for start, audio in reader:
                    if not put(("window", i, start, audio)):
                        return
                item: tuple = ("end", i, reader.total)
            except AudioError as exc:
                item = ("error", i, str(exc))
            if not put(item):
                return
        put(("done",))
    except Exception as exc:  # handed to the consumer, which raises it in the main thread
        put(("fatal", exc))


def tag_files(files: list[Path], recognizer: Any, extractor: Any, hop_seconds: float, smooth: int = SMOOTH,
              on: float = ON, off: float = OFF, on_windows: Any = None) -> Iterator[dict[str, Any]]:
    """Segments of every file, in order: one record per file, or ``{"path", "error"}`` if it cannot be read.

    Windows of consecutive files share batches of ``recognizer.batch_size``; files are decoded
    by a reader thread while the previous batch is classified.

    Parameters
    ----------
    files : audio files
    recognizer : a :class:`instrumentd.model.recognizer.Recognizer`
    extractor : a :class:`instrumentd.pipeline.features.FeatureExtractor` on the recognizer's device
    hop_seconds : window hop, seconds
    smooth, on, off : segmenting settings, see :func:`segment`
    on_windows : called with the number of windows after each batch (progress display)
    """
    cfg = recognizer.features
    hop = max(1, int(round(hop_seconds * cfg.sample_rate)))
    inbox: queue.Queue = queue.Queue(maxsize=2 * recognizer.batch_size)
    stop = threading.Event()
    reader = threading.Thread(target=_read_ahead, args=(files, cfg.sample_rate, cfg.clip_samples, hop, inbox, stop),
                              name="instrumentd-tag-reader", daemon=True)
    state = {i: _File(p) for i, p in enumerate(files)}
    batch: list[tuple[int, int, np.ndarray]] = []  # (file index, start sample, window audio)
    next_out = 0

    def classify_batch() -> None:
        audio = np.stack([a for _, _, a in batch])
        probs = recognizer.predict(extractor(audio))
        # a window that names no instrument (silence, speech, noise) counts as no probability at all
        named = np.array([r is None for r in window_reasons(probs, levels_dbfs(audio), recognizer.decision)])
        probs = probs * named[:, None]
        for (i, start, _), p in zip(batch, probs):
            state[i].starts.append(start)
            state[i].probs.append(p)
        if on_windows:
            on_windows(len(batch))
        batch.clear()

    def finished() -> Iterator[dict[str, Any]]:
        nonlocal next_out
        while next_out in state and state[next_out].done:
            yield _record(state.pop(next_out), recognizer, smooth, on, off)
            next_out += 1

    reader.start()
    try:
        while True:
            item = inbox.get()
            kind = item[0]
            if kind == "fatal":
                raise item[1]
            if kind == "done":
                break
            f = state[item[1]]
            if kind == "window":
                f.queued += 1
                batch.append(item[1:])
                if len(batch) == recognizer.batch_size:
                    classify_batch()
            elif kind == "end":
                f.total = item[2]
            else:
                f.error = item[2]
                batch[:] = [b for b in batch if b[0] != item[1]]
            yield from finished()
        if batch:
            classify_batch()
        yield from finished()
    finally:
        stop.set()
        reader.join()


def _record(f: _File, recognizer: Any, smooth: int, on: float, off: float) -> dict[str, Any]:
    if f.error is not None:
        return {"path": str(f.path), "error": f.error}
    cfg = recognizer.features
    duration = f.total / cfg.sample_rate
    starts = np.asarray(f.starts, dtype=np.float64) / cfg.sample_rate
    segs = segment(np.stack(f.probs), starts, cfg.clip_seconds, duration, recognizer.classes, smooth, on, off)
    return {"path": str(f.path), "duration": round(duration, 3), "windows": len(f.probs),
            "segments": [s.to_dict() for s in segs], "model": recognizer.id, "trained": recognizer.trained}


def _audio_seconds(files: list[Path]) -> float:
    """Total length of ``files`` from their headers, seconds; unreadable files count 0."""
    import soundfile

    total = 0.0
    for f in files:
        try:
            total += soundfile.info(str(f)).duration
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
            continue
    return total


def run(args: argparse.Namespace) -> int:
    """``classify --segments``: tag ``args.paths`` and write segments as ``args.format``; exit 2 if a file failed."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    from instrumentd.model.recognizer import Recognizer
    from instrumentd.pipeline.devices import resolve_device
    from instrumentd.pipeline import AudioError, FeatureExtractor, ParameterError, find_audio
    from instrumentd.pipeline.pitch import DEFAULT_ENGINE

    if args.hop <= 0:
        raise ParameterError(f"--hop must be positive seconds, got {args.hop}")
    check_settings(args.smooth, args.on, args.off)
    files = find_audio(args.paths)
    if not files:
        raise AudioError(f"no audio files found in {' '.join(args.paths)}")
    device = resolve_device(args.device)
    recognizer = Recognizer.from_checkpoint(args.checkpoint, device, batch_size=BATCH.get(device.type, 64))
    if recognizer.device.type == "cuda":
        recognizer.accelerate("auto", recognizer.batch_size)  # the fastest path that agrees with fp32
    if recognizer.untrained_warning:
        print(f"instrumentd classify: warning: {recognizer.untrained_warning}", file=sys.stderr)
    extractor = FeatureExtractor(recognizer.features, args.pitch_engine or DEFAULT_ENGINE, recognizer.device)
    stderr = Console(stderr=True)
    progress = Progress(TextColumn("tagging"), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[hours]}"),
                        TimeRemainingColumn(), console=stderr, transient=True, disable=not stderr.is_terminal,
                        redirect_stdout=sys.stdout.isatty(), redirect_stderr=False)
    with progress:
        seconds = _audio_seconds(files)
        task = progress.add_task("tagging", total=seconds, hours=f"{seconds / 3600:.2f} h of audio")
        records = tag_files(files, recognizer, extractor, args.hop, args.smooth, args.on, args.off,
                            on_windows=lambda n: progress.advance(task, n * args.hop))
        return _WRITERS[args.format](records)


def _write_jsonl(records: Iterator[dict[str, Any]]) -> int:
    failed = 0
    for rec in records:
        failed += "error" in rec
        print(json.dumps(rec), flush=True)
    return 2 if failed else 0


CSV_COLUMNS = ("path", "start", "end", "instrument", "mean_probability", "error")


def _write_csv(records: Iterator[dict[str, Any]]) -> int:
    writer = csv.writer(sys.stdout)
    writer.writerow(CSV_COLUMNS)
    failed = 0
    for rec in records:
        if "error" in rec:
            failed += 1
            writer.writerow([rec["path"], "", "", "", "", rec["error"]])
        elif not rec["segments"]:
            writer.writerow([rec["path"], "", "", "", "", ""])  # read, but nothing was predominant
        for s in rec.get("segments", ()):
            writer.writerow([rec["path"], f"{s['start']:.3f}", f"{s['end']:.3f}", s["instrument"],
                             f"{s['mean_probability']:.4f}", ""])
        sys.stdout.flush()
    return 2 if failed else 0


def _print_table(records: Iterator[dict[str, Any]]) -> int:
    from rich.console import Console
    from rich.table import Table

    from instrumentd.model.classes import NAMES
    from instrumentd.model.recognizer import UNTRAINED

    table = Table()
    for name, justify in (("file", "left"), ("start", "right"), ("end", "right"), ("instrument", "left"),
                          ("mean p", "right")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    failed = 0
    model = None
    for rec in records:
        if "error" in rec:
            failed += 1
            table.add_row(rec["path"], "", "", "[red]error[/red]", rec["error"])
            continue
        model = model or (rec["model"], rec["trained"])
        for s in rec["segments"]:
            table.add_row(rec["path"], f"{s['start']:.1f}", f"{s['end']:.1f}", NAMES[s["instrument"]],
                          f"{s['mean_probability']:.2f}")
    if model:
        table.caption = f"model {model[0]}" + ("" if model[1] else f" — stand-in, {UNTRAINED}")
    Console().print(table)
    return 2 if failed else 0


_WRITERS = {"jsonl": _write_jsonl, "csv": _write_csv, "table": _print_table}
