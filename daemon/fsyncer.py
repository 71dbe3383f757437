"""fsync in a thread of its own, so that the loop that writes the event log never waits for the disk.

A daemon with a thousand streams holds a thousand open log files; fsyncing them all at a heartbeat
took 140-220 ms on an ext4 disk, a stall of every stream's next windows. :class:`BackgroundFsync`
takes duplicates of the descriptors (so a file the writer closes or rotates meanwhile stays valid
for the fsync) and syncs them in its thread; a batch handed over while one is being synced waits,
and a newer batch replaces a waiting one (it covers the same files, written further).

>>> syncer = BackgroundFsync("event log")
>>> syncer.submit([f.fileno() for f in files])   # returns at once
>>> syncer.close()                                # waits for what was handed over
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("instrumentd.daemon.fsyncer")


class BackgroundFsync:
    """One thread that fsyncs the batches of descriptors it is handed.

    Parameters
    ----------
    name : how its warnings name what it syncs
    """

    def __init__(self, name: str):
        self.name = name
        self._cv = threading.Condition()
        self._waiting: list[int] | None = None  # duplicated descriptors still to sync
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, fds: list[int]) -> None:
        """fsync the files behind ``fds`` soon, in the background; the caller may close them at once.

        Raises OSError when the descriptors cannot be duplicated (``Too many open files``); nothing is
        handed over then, and the duplicates made so far are closed."""
        dups: list[int] = []
        try:
            for fd in fds:
                dups.append(os.dup(fd))
        except OSError:
            for fd in dups:
                os.close(fd)
            raise
        with self._cv:
            if self._closed:
                raise RuntimeError(f"{self.name}: fsync asked for after close")
            replaced, self._waiting = self._waiting, dups
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fsync", daemon=True)
                self._thread.start()
            self._cv.notify()
        for fd in replaced or ():
            os.close(fd)

    def close(self) -> None:
        """Sync what was handed over, then stop the thread."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._waiting is None and not self._closed:
                    self._cv.wait()
                if self._waiting is None:
                    return
                fds, self._waiting = self._waiting, None
            failed = 0
            for fd in fds:
                try:
                    os.fsync(fd)
                except OSError:
                    failed += 1
                finally:
                    os.close(fd)
            if failed:
                log.warning("%s: fsync failed on %d of %d files", self.name, failed, len(fds))
