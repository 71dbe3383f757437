"""Append-only, rotating JSON-lines event log, one folder per stream; the source of replay.

Layout: ``LOG_DIR/<stream>/<first seq, 12 digits>.jsonl``, one event per line. A line is written
and flushed to the kernel *before* the event is published, so everything a subscriber ever saw is
in the log even if the daemon is killed (SIGKILL); ``fsync`` runs on rotation, on every heartbeat
and at shutdown, which bounds what a power cut can take. On start the newest file of each stream
is checked: a torn last line (the daemon died mid-write, so it was never published) is cut off,
and ``seq`` continues from the last whole event.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, IO

from instrumentd.pipeline.errors import InstrumentdError, ParameterError

from .config import STREAM_NAME
from .events import encode

log = logging.getLogger("instrumentd.daemon.eventlog")

SUFFIX = ".jsonl"
MAX_REPLAY = 1000  # events per replay answer


class EventLogError(InstrumentdError):
    """The log folder cannot be created, written or read."""


class EventLog:
    """Per-stream append-only logs under ``folder``.

    Parameters
    ----------
    folder : the log folder (created if missing)
    rotate_bytes : a stream's current file is closed and a new one begun past this size
    """

    def __init__(self, folder: str | Path, rotate_bytes: int = 64 * 2**20):
        self.folder = Path(folder).resolve()
        self.rotate_bytes = rotate_bytes
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EventLogError(f"log folder {folder}: cannot create ({exc.strerror})") from None
        self._files: dict[str, IO[bytes]] = {}
        self._next_seq: dict[str, int] = {}

    def stream_dir(self, stream: str) -> Path:
        """``folder/stream``; a name that is not a plain stream name, or would leave the folder, is refused."""
        if not isinstance(stream, str) or not STREAM_NAME.fullmatch(stream):
            raise ParameterError(f"stream name {stream!r} is not 1-64 letters, digits, '_' or '-'")
        path = (self.folder / stream).resolve()
        if path.parent != self.folder:
            raise ParameterError(f"stream name {stream!r} leaves the log folder")
        return path

    def _segments(self, stream: str) -> list[tuple[int, Path]]:
        folder = self.stream_dir(stream)
        if not folder.is_dir():
            return []
        found = []
        for p in folder.iterdir():
            if p.suffix == SUFFIX and p.stem.isdigit():
                found.append((int(p.stem), p))
        return sorted(found)

    def open_stream(self, stream: str) -> int:
        """Prepare ``stream`` for appending; returns its next seq (0 for a new stream)."""
        folder = self.stream_dir(stream)
        folder.mkdir(exist_ok=True)
        segments = self._segments(stream)
        next_seq = 0
        if segments:
            first, path = segments[-1]
            last = _repair_tail(path)
            next_seq = first if last is None else last + 1
        self._next_seq[stream] = next_seq
        return next_seq

    def next_seq(self, stream: str) -> int:
        return self._next_seq[stream]

    def append(self, event: dict[str, Any]) -> None:
        """Write one event of ``event["stream"]``; its ``seq`` must be the stream's next seq."""
        stream, seq = event["stream"], event["seq"]
        if seq != self._next_seq[stream]:
            raise EventLogError(f"stream {stream}: seq {seq} appended, expected {self._next_seq[stream]}")
        f = self._files.get(stream)
        if f is None or f.tell() >= self.rotate_bytes:
            if f is not None:
                _close(f)
            f = self._files[stream] = self._open_file(stream, seq)
        try:
            f.write(encode(event) + b"\n")
            f.flush()
        except OSError as exc:
            raise EventLogError(f"stream {stream}: cannot write the event log ({exc.strerror})") from None
        self._next_seq[stream] = seq + 1

    def _open_file(self, stream: str, seq: int) -> IO[bytes]:
        segments = self._segments(stream)
        if segments and segments[-1][1].stat().st_size < self.rotate_bytes:
            return open(segments[-1][1], "ab")
        return open(self.stream_dir(stream) / f"{seq:012d}{SUFFIX}", "ab")

    def read(self, stream: str, from_seq: int, limit: int = MAX_REPLAY) -> list[dict[str, Any]]:
        """Up to ``limit`` events of ``stream`` with ``seq >= from_seq``, in order."""
        segments = self._segments(stream)
        start = 0
        for i, (first, _) in enumerate(segments):
            if first <= from_seq:
                start = i
        out: list[dict[str, Any]] = []
        for _, path in segments[start:]:
            with open(path, "rb") as f:
                for line in f:
                    if not line.endswith(b"\n"):
                        break
                    event = json.loads(line)
                    if event["seq"] >= from_seq:
                        out.append(event)
                        if len(out) >= limit:
                            return out
        return out

    def streams(self) -> dict[str, int]:
        """Every stream with a log: name -> last seq written (-1 if none)."""
        out = {}
        for p in sorted(self.folder.iterdir()):
            if p.is_dir() and STREAM_NAME.fullmatch(p.name):
                out[p.name] = self.last_seq(p.name)
        return out

    def last_seq(self, stream: str) -> int:
        """The last seq logged for ``stream``, -1 if none."""
        if stream in self._next_seq:
            return self._next_seq[stream] - 1
        segments = self._segments(stream)
        if not segments:
            return -1
        last = _last_seq(segments[-1][1])
        return segments[-1][0] - 1 if last is None else last

    def sync(self) -> None:
        """fsync every open file: what is written survives a power cut."""
        for f in self._files.values():
            os.fsync(f.fileno())

    def close(self) -> None:
        for f in self._files.values():
            _close(f)
        self._files.clear()


def _close(f: IO[bytes]) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()


def _last_seq(path: Path) -> int | None:
    """seq of the last whole line of ``path``, None if it has none."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        block = min(size, 1 << 16)
        while True:
            f.seek(size - block)
            data = f.read(block)
            lines = data.split(b"\n")
            # the first piece may be the end of a longer line unless the block starts the file
            whole = [ln for ln in (lines[:-1] if block == size else lines[1:-1]) if ln]
            if whole:
                return int(json.loads(whole[-1])["seq"])
            if block == size:
                return None
            block = min(size, block * 4)


def _repair_tail(path: Path) -> int | None:
    """Cut a torn last line (no newline) off ``path``; return the last whole line's seq."""
    with open(path, "rb+") as f:
        data_end = f.seek(0, os.SEEK_END)
        if data_end:
            back = min(data_end, 1 << 16)
            f.seek(data_end - back)
            tail = f.read(back)
            if not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n")
                keep = data_end - back + cut + 1 if cut >= 0 else 0
                log.warning("%s: cutting a torn last line (%d bytes)", path, data_end - keep)
                f.truncate(keep)
    return _last_seq(path)
