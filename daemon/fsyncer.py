"""fsync in a thread of its own, so that the loop that writes the event log never waits for the disk.

A daemon with a thousand streams holds a thousand open log files; fsyncing them all at a heartbeat
took 140-220 ms on an ext4 disk, a stall of every stream's next windows. :class:`BackgroundFsync`
takes duplicates of the descriptors (so a file the writer closes or rotates meanwhile stays valid
for the fsync) and syncs them in its thread; a batch handed over while one is being synced waits,
and a newer batch replaces a waiting one (it covers the same files, written further).

On Linux a whole filesystem can be synced in one call, syncfs(2): the event log hands over the
descriptor of its folder instead of one per file (4,000 streams with a fresh event each: done after
24 ms against 541 ms of fsyncs one by one, and one duplicate on the writer's thread instead of 4,000;
``instrumentd bench logsync``).

>>> syncer = BackgroundFsync("event log")
>>> syncer.submit([f.fileno() for f in files])   # returns at once
>>> syncer.submit([], filesystems=[folder_fd])   # or: all of the folder's filesystem, one syncfs
>>> syncer.close()                                # waits for what was handed over
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from typing import Callable, Sequence

log = logging.getLogger("instrumentd.daemon.fsyncer")


def _libc_syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs(fd)`` (Linux, glibc 2.14 and later), or None where there is none."""
    try:
        call = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int]
    call.restype = ctypes.c_int
    return call


_SYNCFS = _libc_syncfs()
HAS_SYNCFS = _SYNCFS is not None


def syncfs(fd: int) -> None:
    """Write every dirty page of the filesystem that holds ``fd`` to its disk (syncfs(2)); OSError if it fails."""
    if _SYNCFS is None:
        raise OSError(0, "syncfs is not available here")
    if _SYNCFS(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class BackgroundFsync:
    """One thread that fsyncs the batches of descriptors it is handed.

    Parameters
    ----------
    name : how its warnings name what it syncs
    """

    def __init__(self, name: str):
        self.name = name
        self._cv = threading.Condition()
        self._waiting: tuple[list[int], list[int]] | None = None  # duplicated (filesystems, files) to sync
        self._closed = False
        self._busy = False  # a batch is being synced
        self._thread: threading.Thread | None = None

    def submit(self, fds: Sequence[int], filesystems: Sequence[int] = ()) -> None:
        """fsync the files behind ``fds``, and syncfs the filesystems behind ``filesystems`` (descriptors
        of a folder on each; see :data:`HAS_SYNCFS`), soon, in the background; the caller may close
        them at once.

        Raises OSError when the descriptors cannot be duplicated (``Too many open files``); nothing is
        handed over then, and the duplicates made so far are closed."""
        dups: list[int] = []
        try:
            for fd in (*filesystems, *fds):
                dups.append(os.dup(fd))
        except OSError:
            for fd in dups:
                os.close(fd)
            raise
        batch = (dups[:len(filesystems)], dups[len(filesystems):])
        with self._cv:
            if self._closed:
                raise RuntimeError(f"{self.name}: fsync asked for after close")
            replaced, self._waiting = self._waiting, batch
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fsync", daemon=True)
                self._thread.start()
            self._cv.notify_all()
        for fd in (*replaced[0], *replaced[1]) if replaced else ():
            os.close(fd)

    def wait(self) -> None:
        """Return once what was handed over is synced."""
        with self._cv:
            while self._waiting is not None or self._busy:
                self._cv.wait()

    def close(self) -> None:
        """Sync what was handed over, then stop the thread."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._waiting is None and not self._closed:
                    self._cv.wait()
                if self._waiting is None:
                    return
                (filesystems, files), self._waiting = self._waiting, None
                self._busy = True
            failed = 0
            for fd, sync in [(fd, syncfs) for fd in filesystems] + [(fd, os.fsync) for fd in files]:
                try:
                    sync(fd)
                except OSError:
                    failed += 1
                finally:
                    os.close(fd)
            if failed:
                log.warning("%s: sync failed on %d of %d files and filesystems", self.name, failed,
                            len(filesystems) + len(files))
            with self._cv:
                self._busy = False
                self._cv.notify_all()
