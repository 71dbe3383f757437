"""``instrumentd classify``: label whole files offline (3 s windows, 1.5 s hop, S2 aggregation)."""

from __future__ import annotations

import argparse
import csv
import errno
import json
import os
import sys
from typing import Any, Iterator

from . import archive

FORMATS = ("table", "jsonl", "csv")
PATH_MAX = os.pathconf("/", "PC_PATH_MAX") if hasattr(os, "pathconf") else 4096  # bytes, with the final NUL


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
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    p.add_argument("--hop", type=float, default=1.5, metavar="SECONDS", help="window hop (default: 1.5)")
    p.add_argument("--threshold", type=float, default=0.5, help="label threshold on aggregated scores (default: 0.5)")
    p.add_argument("--pitch-engine", default=None, help="pitch engine name (default: the pipeline's default)")
    archive.add_arguments(p)
    p.set_defaults(run=run)


def _result_record(path: str, result: Any, recognizer: Any) -> dict[str, Any]:
    classes = recognizer.classes
    clip = recognizer.features.clip_seconds
    return {
        "path": path,
        "labels": result.labels,
        "none": result.none,
        "scores": {c: round(float(s), 6) for c, s in zip(classes, result.scores)},
        "windows": [
            {
                "start": round(float(t), 3),
                "end": round(float(t) + clip, 3),
                "top": classes[int(p.argmax())],
                "none": reason,
                "level_db": round(float(level), 1),
                "probabilities": {c: round(float(v), 6) for c, v in zip(classes, p)},
            }
            for t, p, level, reason in zip(result.window_starts, result.window_probs, result.window_levels,
                                           result.window_reasons)
        ],
        "model": recognizer.id,
        "trained": recognizer.trained,
    }


def classify_paths(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """One record per file: the result, or ``{"path", "error"}`` for a file that cannot be read."""
    from rich.progress import Progress

    from instrumentd.model.recognizer import Recognizer
    from instrumentd.pipeline import AudioError, FeatureExtractor, ParameterError, find_audio, load_audio

    if args.hop <= 0:
        raise ParameterError(f"--hop must be positive seconds, got {args.hop}")
    if not 0 < args.threshold <= 1:
        raise ParameterError(f"--threshold must be in (0, 1], got {args.threshold}")
    for p in args.paths:
        size = len(os.fsencode(p))
        if size >= PATH_MAX:
            raise ParameterError(f"path {p[:40]!r}... is {size} bytes, longer than the system allows ({PATH_MAX - 1})")
    try:
        files = find_audio(args.paths)
    except OSError as exc:
        why = "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) else exc.strerror
        raise AudioError(f"{str(exc.filename)[:200]}: {why}") from None
    if not files:
        raise AudioError(f"no audio files found in {' '.join(args.paths)}")
    recognizer = Recognizer.from_checkpoint(args.checkpoint, args.device)
    if recognizer.device.type == "cuda":
        recognizer.accelerate("auto")  # the fastest path that agrees with fp32 (model/fast.py)
    if recognizer.untrained_warning:
        print(f"instrumentd classify: warning: {recognizer.untrained_warning}", file=sys.stderr)
    engine = args.pitch_engine or _default_engine()
    extractor = FeatureExtractor(recognizer.features, engine, recognizer.device)
    with Progress(transient=True, disable=len(files) < 2 or not sys.stderr.isatty()) as progress:
        task = progress.add_task("classifying", total=len(files))
        for f in files:
            try:
                audio = load_audio(f, recognizer.features.sample_rate)
                result = recognizer.classify_clip(audio, extractor, args.hop, args.threshold)
                yield _result_record(str(f), result, recognizer)
            except AudioError as exc:
                yield {"path": str(f), "error": str(exc)}
            progress.advance(task)


def _default_engine() -> str:
    from instrumentd.pipeline.pitch import DEFAULT_ENGINE

    return DEFAULT_ENGINE


def run(args: argparse.Namespace) -> int:
    if args.segments:
        return archive.run(args)
    records = classify_paths(args)
    failed = 0
    if args.format == "jsonl":
        for rec in records:
            failed += "error" in rec
            print(json.dumps(rec), flush=True)
    elif args.format == "csv":
        failed = _write_csv(records)
    else:
        failed = _print_table(records)
    return 2 if failed else 0


def _write_csv(records: Iterator[dict[str, Any]]) -> int:
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


def _print_table(records: Iterator[dict[str, Any]]) -> int:
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
