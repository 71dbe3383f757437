"""Archive tagging: ``instrumentd classify --segments``, per file the stretches of time in which each
instrument is predominant, from per-window probabilities batched across many files.

The rule is the daemon's (:class:`instrumentd.daemon.segments.Segmenter`, with its defaults from
:class:`instrumentd.daemon.config.Config`): a moving average over the last ``smooth`` windows, an
instrument starts at ``on`` and ends below ``off``. So an archive is tagged as the live service
would have tagged the same audio at the same hop. Only the times differ: here each window stands
for the stretch of time nearer to its centre than to any other window's centre (the first from 0,
the last to the end of the file), so segments tile the file instead of overlapping by a window.
A window that names no instrument (model/decision.py: silence, speech, noise...) counts as all
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

from instrumentd.daemon.config import Config
from instrumentd.model.decision import window_reasons
from instrumentd.pipeline.windows import levels_dbfs

SMOOTH = Config.smooth  # windows in the moving average
ON = Config.on_threshold  # smoothed probability at which an instrument becomes predominant
OFF = Config.off_threshold  # smoothed probability below which it stops being predominant
READ_SECONDS = 20.0  # seconds of audio decoded per block: memory stays flat on hour-long files
# windows per batch: on a CPU, batches past 16 windows fall out of cache and cost 2-4x more per
# window (features and network alike, `instrumentd bench tag`); a GPU wants large ones
BATCH = {"cpu": 16, "cuda": 256}


@dataclasses.dataclass(frozen=True)
class Segment:
    """One stretch of time in which one instrument is predominant."""

    instrument: str  # class code, e.g. "pia"
    start: float  # seconds from the start of the file
    end: float  # seconds
    mean_probability: float  # mean of the instrument's window probabilities over the segment
    windows: int  # windows in the segment

    def to_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "instrument": self.instrument,
                "mean_probability": round(self.mean_probability, 6), "windows": self.windows}


def check_settings(smooth: int, on: float, off: float) -> None:
    """Raise ParameterError naming the bad value unless ``smooth >= 1`` and ``0 < off <= on <= 1``."""
    from instrumentd.pipeline.errors import ParameterError

    if smooth < 1:
        raise ParameterError(f"--smooth must be at least 1 window, got {smooth}")
    if not 0 < off <= on <= 1:
        raise ParameterError(f"need 0 < --off <= --on <= 1, got --on {on}, --off {off}")


def window_cells(starts: np.ndarray, clip_seconds: float, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """The stretch of time each window stands for: ``(cell_start [n], cell_end [n])``, seconds.

    ``starts: [n]`` window starts, seconds, increasing. Boundaries lie halfway between
    consecutive window centres; the first cell starts at 0 and the last ends at ``duration``.
    """
    starts = np.asarray(starts, dtype=np.float64)
    centres = starts + clip_seconds / 2
    inner = (centres[:-1] + centres[1:]) / 2
    return np.concatenate([[0.0], inner]), np.concatenate([inner, [duration]])


def segment(probs: np.ndarray, starts: np.ndarray, clip_seconds: float, duration: float,
            classes: tuple[str, ...], smooth: int = SMOOTH, on: float = ON, off: float = OFF) -> list[Segment]:
    """Per-window probabilities of one file -> its segments, sorted by start, then class order.

    Parameters
    ----------
    probs : float [n_windows, n_classes], softmax probabilities
    starts : float [n_windows], window start times, seconds, increasing
    clip_seconds : window length, seconds
    duration : length of the file, seconds
    classes : class codes in the order of ``probs``' columns
    smooth, on, off : the daemon's segmenting settings (windows, probability, probability)
    """
    from instrumentd.daemon.segments import Segmenter

    check_settings(smooth, on, off)
    probs = np.asarray(probs, dtype=np.float64)
    cell_start, cell_end = window_cells(starts, clip_seconds, duration)
    segmenter = Segmenter(classes, smooth, on, off)
    changes = []
    for p, a, b in zip(probs, cell_start, cell_end):
        changes += segmenter.update(p, float(a), float(b))
    changes += segmenter.close("end of stream")
    out = []
    for ch in changes:
        if ch.state == "end":
            first, stop = np.searchsorted(cell_start, ch.start), np.searchsorted(cell_end, ch.end, side="right")
            column = probs[first:stop, classes.index(ch.instrument)]
            out.append(Segment(ch.instrument, ch.start, ch.end, float(column.mean()), int(stop - first)))
    return sorted(out, key=lambda s: (s.start, classes.index(s.instrument)))


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


# ---- reading: one file -> fixed-length windows, block by block ---------------------------------

class _Windows:
    """Decode ``path`` block by block, resample to ``sr`` and yield ``(start_sample, window [window])``.

    ``window`` and ``hop`` are samples at ``sr``; blocks of ``block_seconds`` are decoded at a time.

    The windows are those of :func:`instrumentd.pipeline.windows.cut_windows` on the whole file;
    after the last one, :attr:`total` holds the file's length in samples at ``sr``.
    """

    def __init__(self, path: Path, sr: int, window: int, hop: int, block_seconds: float = READ_SECONDS):
        self.path, self.sr, self.window, self.hop = path, sr, window, hop
        self.block_seconds = block_seconds
        self.total = 0

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        import soundfile
        import soxr

        from instrumentd.pipeline.audio import sanitize, to_mono
        from instrumentd.pipeline.errors import AudioError
        from instrumentd.pipeline.windows import window_starts

        if not self.path.is_file():
            raise AudioError(f"{self.path}: no such file")
        try:
            f = soundfile.SoundFile(str(self.path))
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise AudioError(f"{self.path}: cannot decode audio ({exc})") from None
        with f:
            resampler = soxr.ResampleStream(f.samplerate, self.sr, 1, dtype="float32", quality="HQ") \
                if f.samplerate != self.sr else None
            buf = np.zeros(0, np.float32)  # samples from buf_start on
            buf_start = next_start = emitted = 0
            block = max(1, int(self.block_seconds * f.samplerate))
            while True:
                try:
                    raw = f.read(block, dtype="float32", always_2d=True)
                except (soundfile.LibsndfileError, RuntimeError) as exc:
                    raise AudioError(f"{self.path}: cannot decode audio ({exc})") from None
                last = len(raw) < block
                mono = to_mono(raw).astype(np.float32, copy=False)
                if resampler is not None:
                    mono = resampler.resample_chunk(mono, last=last)
                buf = np.concatenate([buf, sanitize(np.array(mono, np.float32))])
                while next_start + self.window <= buf_start + len(buf):
                    o = next_start - buf_start
                    yield next_start, buf[o : o + self.window].copy()
                    next_start += self.hop
                    emitted += 1
                if last:
                    break
                # keep at least one window's worth: the last window of a file ends at its very end
                keep = max(0, min(next_start - buf_start, len(buf) - self.window))
                buf, buf_start = buf[keep:], buf_start + keep
        self.total = buf_start + len(buf)
        if self.total == 0:
            raise AudioError(f"{self.path}: file holds no audio samples")
        # the regular windows are a prefix of window_starts(); what is left is the tail window
        for s in window_starts(self.total, self.window, self.hop)[emitted:]:
            piece = buf[int(s) - buf_start : int(s) - buf_start + self.window]
            yield int(s), np.pad(piece, (0, self.window - len(piece)))


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
            reader = _Windows(path, sr, window, hop)
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
    if not recognizer.trained:
        print(f"instrumentd classify: warning: checkpoint {recognizer.id} is UNTRAINED; its labels are meaningless",
              file=sys.stderr)
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
        table.caption = f"model {model[0]}" + ("" if model[1] else " — UNTRAINED stand-in: labels are meaningless")
    Console().print(table)
    return 2 if failed else 0


_WRITERS = {"jsonl": _write_jsonl, "csv": _write_csv, "table": _print_table}
