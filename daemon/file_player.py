"""The file player: a child process that plays every paced ``file:`` source of a daemon in real time.

Decoding a thousand paced files, pacing them and writing their rings took a fifth to a quarter of the
daemon's one interpreter lock, and the worker's reads of the rings took half as long again while
that work ran beside them (one H100 machine's 16-core host, 1,000 files: 201-265 us a read against
131-160 with the rings filled without it). Here a process of its own does it: each file's ring lives
in shared memory (a ``memfd`` the daemon makes and hands over, :class:`~instrumentd.daemon.ringbuffer.SharedRing`),
the player writes the audio, its arrival time and its position there, and the daemon's worker reads
them as from any ring: the daemon does nothing per block at all, and takes the interpreter lock for
none of it.

The player never writes over audio the daemon has not read: it reads the daemon's read position from
the ring's shared memory and keeps :data:`MARGIN_S` (at most a quarter of the ring) clear of it; a
file whose ring is that full waits, and catches up when there is room again (the worker drops
stale audio, counted, when it falls that far behind). The shared positions rely on x86-64's ordering
of loads and stores; elsewhere, and where the system has no ``memfd`` (``os.memfd_create``, Linux),
the daemon plays its files in a thread instead (:class:`Pacer` in daemon/sources.py), with the same
:class:`PacedFile`.

Messages (daemon/helper_process.py):

| from | message | what |
|---|---|---|
| daemon | ``A`` ``{"id", "path", "block", "t0", "capacity"}``, the ring's memfd attached | play a file from ``t0`` (time.monotonic()) |
| daemon | ``S`` ``{"id"}`` | stop a file |
| player | ``R`` ``{"id"}`` | a file's first audio is in its ring |
| player | ``E`` / ``F`` ``{"id", "reason"}`` | a file ended / failed (its last audio is in) |

The player imports only numpy and soundfile.

Usage (the daemon starts it): ``python -m instrumentd.daemon.file_player FD``
"""

from __future__ import annotations

import heapq
import logging
import os
import selectors
import socket
import sys
import time

import numpy as np
import soundfile

from instrumentd.pipeline.audio import BOUNDED_SUBTYPES, mono_block

from .helper_process import Helper, child_socket, receive_message, send_message
from .ringbuffer import SharedRing, SharedWriter, map_shared, shared_memory

log = logging.getLogger("instrumentd.daemon.file_player")

MARGIN_S = 1.0  # seconds of a shared ring the player leaves clear of the daemon's unread audio (at most a quarter)
PLAYER_MIN_WAIT = 0.005  # seconds the player sleeps at least between rounds
PACED_READ_S = 0.5  # seconds of a paced file decoded at a time, ahead of its blocks
_NO_SAMPLES = np.zeros(0, np.float32)


class PacedFile:
    """A file played in real time from ``t0`` (time.monotonic()): its audio comes in blocks of ``block``
    samples, each due when its last sample is; decoded :data:`PACED_READ_S` at a time, mixed to mono."""

    def __init__(self, path: bytes, block: int, t0: float):
        self.file = soundfile.SoundFile(path)
        self.rate = self.file.samplerate
        self.bounded = self.file.subtype in BOUNDED_SUBTYPES
        self.block = block
        self.t0 = t0
        self.done = 0  # samples handed out
        self.ahead = _NO_SAMPLES  # decoded, mono, not yet handed out
        self.eof = False

    def due(self) -> float:
        """time.monotonic() at which the next block's last sample is due."""
        return self.t0 + (self.done + self.block) / self.rate

    def take_due(self, now: float, most: int | None = None) -> np.ndarray:
        """``float32 [n]``: the samples of every whole block due by ``now`` (at most ``most``), decoded as
        needed; empty when none is due."""
        want = int((now - self.t0) * self.rate) // self.block * self.block - self.done
        if most is not None:
            want = min(want, most)
        while len(self.ahead) < want and not self.eof:
            decoded = self.file.read(max(want, int(PACED_READ_S * self.rate)), dtype="float32", always_2d=True)
            self.eof = len(decoded) == 0
            mono = mono_block(decoded, self.bounded)
            self.ahead = np.concatenate([self.ahead, mono]) if len(self.ahead) else mono
        if want <= 0 or not len(self.ahead):
            return _NO_SAMPLES
        take, self.ahead = self.ahead[:want], self.ahead[want:]
        self.done += len(take)
        return take

    @property
    def finished(self) -> bool:
        """True once the whole file has been handed out."""
        return self.eof and not len(self.ahead)

    def close(self) -> None:
        self.file.close()


class _Played:
    """The player's side of one file: the file and its shared ring."""

    def __init__(self, paced: PacedFile, fd: int, capacity: int):
        self.paced = paced
        self.ring = SharedWriter(map_shared(fd, capacity), capacity)
        self.margin = min(int(MARGIN_S * paced.rate), capacity // 4)

    def play(self, now: float) -> bool:
        """Write the file's due blocks that fit (``ring.written`` tells how many); False once the file has
        been written out."""
        self.ring.write(self.paced.take_due(now, max(0, self.ring.room() - self.margin)))
        return not self.paced.finished

    def close(self) -> None:
        self.paced.close()


def _commands(sock: socket.socket, playing: dict[int, _Played], heap: list[tuple[float, int]]) -> bool:
    """Take every waiting command; False once the daemon has gone."""
    while True:
        try:
            message = receive_message(sock)
        except BlockingIOError:
            return True
        if message is None:
            return False
        kind, body, fds = message
        if kind == b"A":
            fid = body["id"]
            try:
                paced = PacedFile(os.fsencode(body["path"]), body["block"], body["t0"])
                playing[fid] = _Played(paced, fds[0], body["capacity"])
                heapq.heappush(heap, (paced.due(), fid))
            except (OSError, soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
                failure = str(exc)
            else:
                failure = None
            finally:
                for fd in fds:
                    os.close(fd)
            if failure is not None:
                try:
                    send_message(sock, b"F", {"id": fid, "reason": failure})
                except OSError:
                    return False
        elif kind == b"S":
            stopped = playing.pop(body["id"], None)
            if stopped is not None:
                stopped.close()


def main(fd: int) -> int:
    """The player's loop: rounds until the daemon goes; each plays only the files whose next block is due
    (a heap by due time), then tells the daemon which of them began, ended or failed."""
    sock = child_socket(fd)
    # a selector, not select(): a daemon with a thousand streams hands over a descriptor past 1024
    commands = selectors.DefaultSelector()
    commands.register(sock, selectors.EVENT_READ)
    playing: dict[int, _Played] = {}
    heap: list[tuple[float, int]] = []  # (when its next block is due, file id); stopped files are skipped
    while True:
        wait = max(PLAYER_MIN_WAIT, heap[0][0] - time.monotonic()) if heap else None
        if commands.select(wait) and not _commands(sock, playing, heap):
            return 0
        now = time.monotonic()
        news: list[tuple[bytes, int, str]] = []
        while heap and heap[0][0] <= now:
            fid = heapq.heappop(heap)[1]
            played = playing.get(fid)
            if played is None:
                continue
            first = played.ring.written == 0
            try:
                going = played.play(now)
            except (OSError, soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
                going, outcome = False, (b"F", fid, str(exc))
            else:
                outcome = (b"E", fid, "")
            if first and played.ring.written:
                news.append((b"R", fid, ""))
            if going:  # a file held back by a full ring tries again next round
                heapq.heappush(heap, (max(played.paced.due(), now + PLAYER_MIN_WAIT), fid))
            else:
                news.append(outcome)
                playing.pop(fid).close()
        try:
            for kind, fid, reason in news:
                send_message(sock, kind, {"id": fid, "reason": reason})
        except OSError:
            return 0


class FilePlayer(Helper):
    """The daemon's side: starts the player with the first file, hands it each paced file's ring, and
    notes what it reports of each file."""

    module = "instrumentd.daemon.file_player"
    title = "file player"

    def __init__(self):
        super().__init__()
        self._files: dict[int, object] = {}  # id -> FileSource being played
        self._next_id = 0

    def add(self, source) -> None:
        """Play ``source`` (a paced :class:`~instrumentd.daemon.sources.FileSource`, not started, its ring
        empty) from ``source.delay_s`` seconds after now."""
        capacity = source.ring.capacity
        fd, mem = shared_memory(source.name, capacity)
        try:
            shared = SharedRing(mem, capacity, source.ring.rate)
            shared.on_close = source.ring.on_close  # the worker's, set when it took the stream
            source.ring = shared
            with self._lock:
                sock, fid = self._socket(), self._next_id
                self._next_id += 1
                self._files[fid] = source
                source.player_id = fid
            body = {"id": fid, "path": os.fsdecode(source.path), "block": source.block,
                    "t0": time.monotonic() + source.delay_s, "capacity": capacity}
            try:
                self.send(b"A", body, [fd], sock)
            except OSError as exc:
                with self._lock:
                    orphan = self._files.pop(fid, None)
                if orphan is not None:
                    source.finish(failed=True, reason=f"the file player is gone ({exc})")
        finally:
            os.close(fd)

    def stop(self, source) -> None:
        """Stop playing ``source`` (what is in its ring stays readable)."""
        with self._lock:
            sock, fid = self._sock, source.player_id
            if self._files.pop(fid, None) is None or sock is None:
                return
        try:
            self.send(b"S", {"id": fid}, sock=sock)
        except OSError:
            pass  # the player is gone: nothing plays the file any more

    def handle(self, kind: bytes, body: dict) -> None:
        with self._lock:
            source = self._files.get(body["id"]) if kind == b"R" else self._files.pop(body["id"], None)
        if source is None:
            return
        if kind == b"R":
            source.flowing()
        else:
            source.finish(failed=kind == b"F", reason=body["reason"])

    def orphans(self) -> list:
        orphans = list(self._files.values())
        self._files.clear()
        return orphans

    def lost(self, orphans: list, code: int) -> None:
        """Every file the player played fails; the next file starts a new player."""
        if orphans:
            log.error("the file player exited (code %s) while playing %d files", code, len(orphans))
        for source in orphans:
            source.finish(failed=True, reason=f"the file player exited (code {code})")


PLAYER = FilePlayer()  # the process's one file player


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
