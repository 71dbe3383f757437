"""Append-only, rotating JSON-lines event log, one folder per stream; the source of replay.

Layout: ``LOG_DIR/<stream>/<first seq, 12 digits>.jsonl``, one event per line. A line is written
and flushed to the kernel *before* the event is published, so everything a subscriber ever saw is
in the log even if the daemon is killed (SIGKILL); ``fsync`` runs on rotation, on every heartbeat
(in a thread of its own: :mod:`~instrumentd.daemon.fsyncer`) and at shutdown, which bounds what a
power cut can take. On start the newest file of each stream
is checked: a torn last line (the daemon died mid-write, so it was never published) is cut off,
and ``seq`` continues from the last whole event. A line that is not an event (a disk error, a
hand edit) is skipped with a warning and counted in :attr:`LogIndex.skipped`, never fatal.

One daemon writes a folder: :func:`lock_folder` takes an OS lock (``fcntl.flock`` on
``LOG_DIR/.lock``, which holds the owner's pid) that the kernel drops when the process dies.
Replay reads through a :class:`LogIndex`: a sparse map from ``seq`` to file offset per stream,
extended from where it stopped as the files grow, so an answer never re-reads a log from its start.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, IO

from instrumentd.pipeline.errors import EXIT_STARTUP, InstrumentdError, ParameterError

from .config import STREAM_NAME
from .events import encode
from .fsyncer import HAS_SYNCFS, BackgroundFsync

log = logging.getLogger("instrumentd.daemon.eventlog")

SUFFIX = ".jsonl"
MAX_REPLAY = 1000  # events per replay answer
INDEX_EVERY = 64  # events between two entries of a stream's seq -> offset index
LOCK_FILE = ".lock"
LOCK_FD_ENV = "_INSTRUMENTD_LOG_LOCK_FD"  # a lock inherited from the group's parent (daemon/group.py)



def stream_folder(folder: Path, stream: str) -> Path:
    """``folder/stream`` (``folder`` resolved); a name that is not a plain stream name, or would leave
    the folder, is refused."""
    if not isinstance(stream, str) or not STREAM_NAME.fullmatch(stream):
        raise ParameterError(f"stream name {stream!r} is not 1-64 letters, digits, '_' or '-'")
    path = (folder / stream).resolve()
    if path.parent != folder:
        raise ParameterError(f"stream name {stream!r} leaves the log folder")
    return path

class EventLogError(InstrumentdError):
    """The log folder cannot be created, written or read."""

    exit_code = EXIT_STARTUP


class LogLockedError(EventLogError):
    """Another daemon writes this log folder."""


def _why(exc: OSError) -> str:
    """``exc``'s reason in words, "permission denied" spelled out whatever the locale."""
    return "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) else (exc.strerror or str(exc))


def make_folder(folder: str | Path, private: bool = False) -> Path:
    """Create ``folder`` (and parents); ``private`` makes it owner-only (0700). Returns it resolved.

    Raises EventLogError naming the folder and the reason ("permission denied") when it cannot be
    created or written.
    """
    folder = Path(folder).resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if private:
            folder.chmod(0o700)
    except OSError as exc:
        raise EventLogError(f"log folder {folder}: cannot create ({_why(exc)})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise EventLogError(f"log folder {folder}: cannot write (permission denied)")
    return folder


class LogLock:
    """The OS lock on a log folder (see :func:`lock_folder`); :meth:`close` or process death frees it."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def lock_folder(folder: str | Path) -> LogLock:
    """Take ``folder``'s writer lock, or raise LogLockedError naming the pid that holds it.

    A daemon started by a group gets the parent's lock descriptor (``LOCK_FD_ENV``): it checks
    that this descriptor holds the lock on the same file instead of taking a second one.
    """
    folder = Path(folder).resolve()
    path = folder / LOCK_FILE
    inherited = os.environ.get(LOCK_FD_ENV)
    if inherited and inherited.isdigit():
        fd = int(inherited)
        try:
            same = os.fstat(fd).st_ino == path.stat().st_ino
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            same = False
        if same:
            return LogLock(path, fd)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise EventLogError(f"log folder {folder}: cannot open its lock file ({_why(exc)})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise LogLockedError(f"log folder {folder} is in use by another daemon (pid {holder}); "
                             f"stop it or give this one another --log-dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return LogLock(path, fd)


class EventLog:
    """Per-stream append-only logs under ``folder``.

    Parameters
    ----------
    folder : the log folder (created if missing)
    rotate_bytes : a stream's current file is closed and a new one begun past this size
    private : folders 0700 and files 0600 whatever the umask (the daemon's endpoints use CurveZMQ);
        otherwise files follow the umask
    whole_filesystem : a heartbeat's sync is one syncfs of the folder's filesystem (where the system has
        it; the default there) rather than an fsync a file
    """

    def __init__(self, folder: str | Path, rotate_bytes: int = 64 * 2**20, private: bool = False,
                 whole_filesystem: bool = HAS_SYNCFS):
        self.folder = make_folder(folder, private)
        self.rotate_bytes = rotate_bytes
        self.private = private
        self._files: dict[str, IO[bytes]] = {}
        self._sizes: dict[str, int] = {}  # bytes in each open file: asking the file costs a system call
        self._next_seq: dict[str, int] = {}
        self._dirs: dict[str, Path] = {}  # each opened stream's folder
        self._newest: dict[str, Path | None] = {}  # its newest file, as open_stream found it, until appended to
        self._index: LogIndex | None = None
        self._fsync = BackgroundFsync(f"event log {self.folder}")
        # where syncfs(2) is, a heartbeat syncs the folder's filesystem in one call; files of a stream
        # whose folder is on another filesystem (a mount in the log folder) are fsynced one by one
        self._whole_filesystem = whole_filesystem and HAS_SYNCFS
        self._folder_dev = self.folder.stat().st_dev
        self._folder_fd: int | None = None  # opened at the first sync
        self._elsewhere: set[str] = set()  # streams whose folder is on another filesystem

    def stream_dir(self, stream: str) -> Path:
        """``folder/stream``; a name that is not a plain stream name, or would leave the folder, is refused.
        An opened stream's folder is not looked up again (resolving it costs a system call per part)."""
        return self._dirs.get(stream) or stream_folder(self.folder, stream)

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
        try:
            folder.mkdir(exist_ok=True)
            if self.private:
                folder.chmod(0o700)
        except OSError as exc:
            raise EventLogError(f"stream {stream}: cannot create {folder} ({_why(exc)})") from None
        self._dirs[stream] = folder
        if folder.stat().st_dev != self._folder_dev:
            self._elsewhere.add(stream)
        segments = self._segments(stream)
        next_seq = 0
        if segments:
            first, path = segments[-1]
            last = _repair_tail(path)
            next_seq = first if last is None else last + 1
        self._next_seq[stream] = next_seq
        self._newest[stream] = segments[-1][1] if segments else None
        return next_seq

    def next_seq(self, stream: str) -> int:
        return self._next_seq[stream]

    def append(self, event: dict[str, Any], body: bytes | None = None) -> None:
        """Write one event of ``event["stream"]``; its ``seq`` must be the stream's next seq. ``body``:
        the event already encoded (:func:`~instrumentd.daemon.events.encode`), if it is."""
        stream, seq = event["stream"], event["seq"]
        if seq != self._next_seq[stream]:
            raise EventLogError(f"stream {stream}: seq {seq} appended, expected {self._next_seq[stream]}")
        f = self._files.get(stream)
        if f is None or self._sizes[stream] >= self.rotate_bytes:
            if f is not None:
                _close(self._files.pop(stream))
            try:
                f = self._files[stream] = self._open_file(stream, seq)
            except OSError as exc:
                raise EventLogError(f"stream {stream}: cannot open the event log ({_why(exc)})") from None
            self._sizes[stream] = f.tell()
        line = (body or encode(event)) + b"\n"
        try:
            f.write(line)
            f.flush()
        except OSError as exc:
            raise EventLogError(f"stream {stream}: cannot write the event log ({_why(exc)})") from None
        self._sizes[stream] += len(line)
        self._next_seq[stream] = seq + 1

    def _open_file(self, stream: str, seq: int) -> IO[bytes]:
        if stream in self._newest:  # the first file since open_stream, which listed the folder
            path = self._newest.pop(stream)
        else:
            segments = self._segments(stream)
            path = segments[-1][1] if segments else None
        if path is None or path.stat().st_size >= self.rotate_bytes:
            path = self.stream_dir(stream) / f"{seq:012d}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600 if self.private else 0o666)
        if self.private:
            os.fchmod(fd, 0o600)
        return os.fdopen(fd, "ab")

    def read(self, stream: str, from_seq: int, limit: int = MAX_REPLAY) -> list[dict[str, Any]]:
        """Up to ``limit`` events of ``stream`` with ``seq >= from_seq``, in order (through :class:`LogIndex`)."""
        if self._index is None:
            self._index = LogIndex(self.folder)
        return self._index.read(stream, from_seq, limit)

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
        """Sync every open file, in the background: what is written now survives a power cut once that is
        done. One syncfs of the log folder's filesystem where the system has it (and an fsync for each
        file elsewhere), else an fsync for each file.

        When the process is out of descriptors for it, the sync is skipped with a warning (the events
        are written; only their way to the disk waits for the next sync) instead of stopping the daemon."""
        try:
            if self._whole_filesystem:
                if self._folder_fd is None:
                    self._folder_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                filesystems = [self._folder_fd]
                files = [self._files[s] for s in self._elsewhere if s in self._files]
            else:
                files, filesystems = self._files.values(), []
            self._fsync.submit([f.fileno() for f in files], filesystems)
        except OSError as exc:
            log.warning("event log: sync of %d files skipped (%s); the next heartbeat tries again",
                        len(self._files), _why(exc))

    def wait_synced(self) -> None:
        """Return once the last :meth:`sync` is done."""
        self._fsync.wait()

    def close(self) -> None:
        """Wait for a background sync, then fsync and close every file."""
        self._fsync.close()
        if self._folder_fd is not None:
            os.close(self._folder_fd)
            self._folder_fd = None
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
            for line in reversed(whole):
                seq = _seq_of(line)
                if seq is not None:
                    return seq
                log.warning("%s: skipping a line that is not an event (%d bytes)", path, len(line))
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


def _event_of(line: bytes) -> dict[str, Any] | None:
    """One logged line as an event with a ``seq``, None if the line is not one."""
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        return None
    seq = event.get("seq") if isinstance(event, dict) else None
    return event if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None


def _seq_of(line: bytes) -> int | None:
    """The ``seq`` of one logged line, None if the line is not a logged event."""
    event = _event_of(line)
    return None if event is None else event["seq"]


class LogIndex:
    """Reads a log folder written by another thread or process, for replay.

    Per stream it keeps, for every :data:`INDEX_EVERY`-th event, ``(seq, file, offset)``, and per
    file how far it has been read; each call reads only what was appended since. A line that is not
    an event is skipped with a warning and counted in :attr:`skipped`. Thread-safe.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).resolve()
        self.skipped = 0
        self._lock = threading.Lock()
        self._marks: dict[str, list[tuple[int, Path, int]]] = {}  # stream -> [(seq, file, offset)] sorted by seq
        self._done: dict[str, dict[Path, int]] = {}  # stream -> file -> bytes indexed (whole lines)
        self._last: dict[str, int] = {}  # stream -> last seq indexed
        self._count: dict[str, int] = {}  # stream -> events indexed

    def _stream_dir(self, stream: str) -> Path:
        return stream_folder(self.folder, stream)

    def _refresh(self, stream: str) -> None:
        folder = self._stream_dir(stream)
        files = sorted((int(p.stem), p) for p in folder.glob(f"*{SUFFIX}") if p.stem.isdigit()) \
            if folder.is_dir() else []
        done = self._done.setdefault(stream, {})
        marks = self._marks.setdefault(stream, [])
        for _, path in files:
            start = done.get(path, 0)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < start:  # cut at start-up (a torn line): nothing whole was lost
                start = done[path] = size
            if size == start:
                continue
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read(size - start)
            end = data.rfind(b"\n") + 1
            offset = start
            for line in data[:end].split(b"\n")[:-1]:
                seq = _seq_of(line)
                if seq is None:
                    self.skipped += 1
                    log.warning("%s: skipping a line at byte %d that is not an event (%d so far)", path, offset,
                                self.skipped)
                elif seq > self._last.get(stream, -1):
                    if self._count.get(stream, 0) % INDEX_EVERY == 0:
                        marks.append((seq, path, offset))
                    self._count[stream] = self._count.get(stream, 0) + 1
                    self._last[stream] = seq
                offset += len(line) + 1
            done[path] = start + end

    def last_seq(self, stream: str) -> int:
        """The last seq logged for ``stream``, -1 if none."""
        with self._lock:
            self._refresh(stream)
            return self._last.get(stream, -1)

    def streams(self) -> dict[str, int]:
        """Every stream with a log: name -> last seq written (-1 if none)."""
        names = [p.name for p in sorted(self.folder.iterdir()) if p.is_dir() and STREAM_NAME.fullmatch(p.name)]
        return {name: self.last_seq(name) for name in names}

    def read(self, stream: str, from_seq: int, limit: int = MAX_REPLAY) -> list[dict[str, Any]]:
        """Up to ``limit`` events of ``stream`` with ``seq >= from_seq``, in order: a seek to the
        nearest index entry, then at most :data:`INDEX_EVERY` lines before the first one returned."""
        with self._lock:
            self._refresh(stream)
            marks = self._marks.get(stream, [])
            done = dict(self._done.get(stream, {}))
        if not marks:
            return []
        _, path, offset = marks[max(0, bisect.bisect_right(marks, from_seq, key=lambda m: m[0]) - 1)]
        files = sorted(done)
        out: list[dict[str, Any]] = []
        for p in files[files.index(path):]:
            with open(p, "rb") as f:
                f.seek(offset)
                remaining = done[p] - offset
                for line in f:
                    remaining -= len(line)
                    if remaining < 0:
                        break
                    event = _event_of(line)
                    if event is not None and event["seq"] >= from_seq:
                        out.append(event)
                        if len(out) >= limit:
                            return out
            offset = 0
        return out
