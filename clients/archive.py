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

import dataclasses
import queue
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from instrumentd.daemon.segments import OFF, ON, SMOOTH, segment
from instrumentd.model.decision import window_reasons
from instrumentd.pipeline.mask import voiced_share
from instrumentd.pipeline.windows import FileWindows, levels_dbfs

# windows per batch: on a CPU, batches past 16 windows fall out of cache and cost 2-4x more per
# window (features and network alike, `instrumentd bench tag`); a GPU wants large ones
BATCH = {"cpu": 16, "cuda": 256}


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
    """Thread body: decode ``files`` in order and put ``("window", i, start, audio, audible)`` (the share
    of ``audio`` that is the file's, not padding), ``("end", i, total)`` or ``("error", i, message)`` on
    ``out``, then ``("done",)``."""
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
                    # the reader knows a file's length before its tail window, the only one that can be padded
                    audible = min(1.0, (reader.total - start) / window) if reader.total else 1.0
                    if not put(("window", i, start, audio, audible)):
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
    batch: list[tuple[int, int, np.ndarray, float]] = []  # (file index, start sample, window audio, audible share)
    next_out = 0

    def classify_batch() -> None:
        audio = np.stack([a for _, _, a, _ in batch])
        features = extractor(audio)
        probs = recognizer.predict(features)
        # a window that names no instrument (silence, speech, noise) counts as no probability at all
        voiced = voiced_share(features.mask, np.array([audible for *_, audible in batch]))
        reasons = window_reasons(probs, levels_dbfs(audio), recognizer.decision, voiced=voiced)
        named = np.array([r is None for r in reasons])
        probs = probs * named[:, None]
        for (i, start, _, _), p in zip(batch, probs):
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
