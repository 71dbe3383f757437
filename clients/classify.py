"""Label whole audio files offline (3 s windows, 1.5 s hop, S2 aggregation): what ``instrumentd classify`` prints."""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, Iterator

PATH_MAX = os.pathconf("/", "PC_PATH_MAX") if hasattr(os, "pathconf") else 4096  # bytes, with the final NUL


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


def classify_paths(paths: list[str], checkpoint: str | None = None, device: str = "auto", hop_s: float = 1.5,
                   threshold: float = 0.5, pitch_engine: str | None = None) -> Iterator[dict[str, Any]]:
    """One record per audio file in ``paths`` (files, or folders searched recursively): the result, or
    ``{"path", "error"}`` for a file that cannot be read.

    Each file is cut into 3 s windows every ``hop_s`` seconds; classes whose aggregated score reaches
    ``threshold`` are its labels (:meth:`~instrumentd.model.recognizer.Recognizer.classify_clip`).
    ``checkpoint`` None is the bundled one; ``pitch_engine`` None the pipeline's default.
    """
    from rich.progress import Progress

    from instrumentd.model.recognizer import Recognizer
    from instrumentd.pipeline import AudioError, FeatureExtractor, ParameterError, find_audio, load_audio

    if hop_s <= 0:
        raise ParameterError(f"--hop must be positive seconds, got {hop_s}")
    if not 0 < threshold <= 1:
        raise ParameterError(f"--threshold must be in (0, 1], got {threshold}")
    for p in paths:
        size = len(os.fsencode(p))
        if size >= PATH_MAX:
            raise ParameterError(f"path {p[:40]!r}... is {size} bytes, longer than the system allows ({PATH_MAX - 1})")
    try:
        files = find_audio(paths)
    except OSError as exc:
        why = "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) else exc.strerror
        raise AudioError(f"{str(exc.filename)[:200]}: {why}") from None
    if not files:
        raise AudioError(f"no audio files found in {' '.join(paths)}")
    recognizer = Recognizer.from_checkpoint(checkpoint, device)
    if recognizer.device.type == "cuda":
        recognizer.accelerate("auto")  # the fastest path that agrees with fp32 (model/fast.py)
    if recognizer.untrained_warning:
        print(f"instrumentd classify: warning: {recognizer.untrained_warning}", file=sys.stderr)
    engine = pitch_engine or _default_engine()
    extractor = FeatureExtractor(recognizer.features, engine, recognizer.device)
    with Progress(transient=True, disable=len(files) < 2 or not sys.stderr.isatty()) as progress:
        task = progress.add_task("classifying", total=len(files))
        for f in files:
            try:
                audio = load_audio(f, recognizer.features.sample_rate)
                result = recognizer.classify_clip(audio, extractor, hop_s, threshold)
                yield _result_record(str(f), result, recognizer)
            except AudioError as exc:
                yield {"path": str(f), "error": str(exc)}
            progress.advance(task)


def _default_engine() -> str:
    from instrumentd.pipeline.pitch import DEFAULT_ENGINE

    return DEFAULT_ENGINE
