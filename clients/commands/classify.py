"""``instrumentd classify``: label audio files, or find their instrument segments (``--segments``).

The labels come from :func:`instrumentd.clients.classify.classify_paths`, the segments from
:func:`instrumentd.clients.archive.tag_files`; this module turns the flags into their values and
writes the records as a table, JSON lines or CSV. A file that cannot be read is reported in its
row and makes the exit code 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any, Iterator

from instrumentd.daemon.segments import OFF, ON, SMOOTH
from instrumentd.pipeline.errors import EXIT_ERROR, EXIT_OK

from .options import add_device_argument, add_pitch_engine_argument


FORMATS = ("table", "jsonl", "csv")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "classify",
        help="label audio files or folders (IRMAS layout included)",
        description=(
            "Label audio files with their predominant instruments: anything soundfile or ffmpeg decodes "
            "(.wav .flac .ogg .mp3 .aiff, and through ffmpeg .m4a .aac .opus or a video's audio track). "
            "Folders are searched recursively for those extensions. Each file is cut into 3 s windows every "
            "--hop seconds. A window names no instrument when it is silent (under -60 dBFS) or when the "
            "model is unsure (speech, noise, drums alone...). Over the windows that name one, "
            "probabilities are summed per class and divided by the largest sum, and classes at or above "
            "--threshold are the file's labels; a file where too few audible windows name one gets no label "
            "and a reason (\"none\": silence, speech or no instrument). Scores are the mean window probabilities."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio file or folder")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("--checkpoint", metavar="PATH", help="model checkpoint (default: the bundled one)")
    add_device_argument(p)
    p.add_argument("--hop", type=float, default=1.5, metavar="SECONDS", help="window hop (default: 1.5)")
    p.add_argument("--threshold", type=float, default=0.5, help="label threshold on aggregated scores (default: 0.5)")
    add_pitch_engine_argument(p)
    _add_segment_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.segments:
        failed = _segments(args)
    else:
        from instrumentd.clients.classify import classify_paths

        records = classify_paths(args.paths, args.checkpoint, args.device, args.hop, args.threshold,
                                 args.pitch_engine)
        failed = LABEL_WRITERS[args.format](records)
    return EXIT_ERROR if failed else EXIT_OK


def _write_jsonl(records: Iterator[dict[str, Any]]) -> int:
    failed = 0
    for rec in records:
        failed += "error" in rec
        print(json.dumps(rec), flush=True)
    return failed


def _labels_csv(records: Iterator[dict[str, Any]]) -> int:
    from instrumentd.model.classes import CLASSES

    writer = csv.writer(sys.stdout)
    writer.writerow(["path", "labels", "none", *CLASSES, "model", "trained", "error"])
    failed = 0
    for rec in records:
        if "error" in rec:
            failed += 1
            writer.writerow([rec["path"], "", "", *[""] * len(CLASSES), "", "", rec["error"]])
            continue
        writer.writerow([rec["path"], " ".join(rec["labels"]), rec["none"] or "",
                         *(f"{rec['scores'][c]:.4f}" for c in CLASSES),
                         rec["model"], rec["trained"], ""])
    return failed


def _labels_table(records: Iterator[dict[str, Any]]) -> int:
    from rich.console import Console
    from rich.table import Table

    from instrumentd.model.classes import NAMES
    from instrumentd.model.recognizer import UNTRAINED

    table = Table()
    table.add_column("file", overflow="fold")
    table.add_column("labels")
    table.add_column("top scores")
    table.add_column("windows", justify="right")
    failed = 0
    model = None
    for rec in records:
        if "error" in rec:
            failed += 1
            table.add_row(rec["path"], "[red]error[/red]", rec["error"], "")
            continue
        model = model or (rec["model"], rec["trained"])
        top = sorted(rec["scores"].items(), key=lambda kv: -kv[1])[:3]
        table.add_row(rec["path"], ", ".join(NAMES[c] for c in rec["labels"]) or f"- ({rec['none']})",
                      "  ".join(f"{c} {s:.2f}" for c, s in top), str(len(rec["windows"])))
    if model:
        table.caption = f"model {model[0]}" + ("" if model[1] else f" — stand-in, {UNTRAINED}")
    Console().print(table)
    return failed


LABEL_WRITERS = {"jsonl": _write_jsonl, "csv": _labels_csv, "table": _labels_table}


def _add_segment_arguments(parser: argparse.ArgumentParser) -> None:
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


def _segments(args: argparse.Namespace) -> int:
    """``classify --segments``: tag ``args.paths`` and write segments as ``args.format``; returns the files that failed."""
    from instrumentd.daemon.segments import check_settings
    from instrumentd.pipeline.errors import ParameterError

    # the settings first: a mistake is told before torch and the model load (seconds)
    if args.hop <= 0:
        raise ParameterError(f"--hop must be positive seconds, got {args.hop}")
    check_settings(args.smooth, args.on, args.off)

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    from instrumentd.clients.archive import BATCH, tag_files
    from instrumentd.model.recognizer import Recognizer
    from instrumentd.pipeline.devices import resolve_device
    from instrumentd.pipeline import AudioError, FeatureExtractor, find_audio
    from instrumentd.pipeline.pitch import DEFAULT_ENGINE

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
        return SEGMENT_WRITERS[args.format](records)


CSV_COLUMNS = ("path", "start", "end", "instrument", "mean_probability", "error")


def _segments_csv(records: Iterator[dict[str, Any]]) -> int:
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
    return failed


def _segments_table(records: Iterator[dict[str, Any]]) -> int:
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
    return failed


SEGMENT_WRITERS = {"jsonl": _write_jsonl, "csv": _segments_csv, "table": _segments_table}
