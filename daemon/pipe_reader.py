"""The pipe reader: a child process that reads the pipes of a daemon's ``ffmpeg:`` sources into their rings.

A thousand live network streams made the daemon's own interpreter read ten thousand pipe blocks a
second (one thread for all, daemon/sources.py :class:`~instrumentd.daemon.sources.PipeHub`), and
that, not decoding, held the serve loop back (docs/PERFORMANCE.md). Here a process of its own does
it, as the file player does for paced files (daemon/file_player.py): each source's ring lives in
shared memory (:class:`~instrumentd.daemon.ringbuffer.SharedRing`), the daemon hands the reader each
new ffmpeg's stdout, and the reader writes the samples, their arrival times and its position there.
The daemon keeps everything else: it starts, watches and restarts the children, reads their stderr,
and decides what an exit means; it tells a stall from the time of the last input the reader notes in
the ring.

Until the daemon makes a ring live (:meth:`~instrumentd.daemon.ringbuffer.SharedRing.go_live`: a
live network stream, known at its first audio) the reader reads a pipe only as far as its ring has
room, so that a finite input is decoded as fast as the worker reads it; a live ring takes every
block at once, and a worker a ring behind loses the oldest (counted on its side). Where rings
cannot be shared (no ``memfd``, not x86-64) the daemon reads the pipes in a thread instead.

Messages (daemon/helper_process.py):

| from | message | what |
|---|---|---|
| daemon | ``A`` ``{"id", "capacity"}``, the ring's memfd attached | a source's ring |
| daemon | ``P`` ``{"id"}``, the pipe attached | read a new child's stdout (mono little-endian float32) into the ring |
| daemon | ``S`` ``{"id"}`` | forget a source: its ring, and its pipe if one is open |
| reader | ``R`` ``{"id"}`` | a pipe's first audio is in the ring |
| reader | ``D`` ``{"id"}`` | a pipe has ended (end of file, or an error); all its audio is in the ring |

The reader imports only the PCM reader of pipeline/audio.py (numpy, soundfile, soxr).

Usage (the daemon starts it): ``python -m instrumentd.daemon.pipe_reader FD``
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import sys
import threading
import time

from instrumentd.pipeline.audio import PcmReader

from .helper_process import Helper, child_socket, receive_message, send_message
from .ringbuffer import SharedRing, SharedWriter, map_shared, shared_memory

log = logging.getLogger("instrumentd.daemon.pipe_reader")

READ_MAX = 1 << 16  # bytes read from one pipe at most per round (a Linux pipe holds 64 KiB)
SLICE_S = 0.02  # seconds the reader lets the pipes fill between rounds: fewer, larger reads
SLICE_MANY_S = 0.1  # seconds between rounds past MANY pipes (a 64 KiB pipe holds 0.37 s of 44.1 kHz float32)
MANY = 100  # pipes past which the rounds grow
DONE_WAIT_S = 2.0  # seconds the daemon waits for the reader to finish a pipe whose child has exited


class _Pipe:
    """The reader's side of one child's stdout: its samples go into ``ring``."""

    def __init__(self, sid: int, fd: int, ring: SharedWriter):
        self.sid = sid
        self.fd = fd
        self.ring = ring
        self.pcm = PcmReader("<f4", 1)
        self.started = False  # audio has come

    def read(self) -> bool:
        """Read what the pipe holds into the ring (a ring not yet live: what fits); False at its end."""
        want = READ_MAX
        if not self.ring.live:
            want = min(want, 4 * self.ring.room() - self.pcm.pending)
            if want <= 0:  # the worker is behind, not the child: no stall
                self.ring.noted(time.monotonic_ns())
                return True
        try:
            data = os.read(self.fd, want)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            return False
        self.ring.noted(time.monotonic_ns())
        self.ring.write(self.pcm.push(data))
        return True


class _Reader:
    """The reader process's state: the rings by source id, the open pipes, and what to tell the daemon."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ)
        self.rings: dict[int, SharedWriter] = {}
        self.pipes: dict[int, _Pipe] = {}
        self.news: list[tuple[bytes, int]] = []

    def commands(self) -> bool:
        """Take every waiting command; False once the daemon has gone."""
        while True:
            try:
                message = receive_message(self.sock)
            except BlockingIOError:
                return True
            if message is None:
                return False
            kind, body, fds = message
            sid = body["id"]
            if kind == b"A":
                self.rings[sid] = SharedWriter(map_shared(fds[0], body["capacity"]), body["capacity"])
                os.close(fds[0])
            elif kind == b"P":
                os.set_blocking(fds[0], False)
                self.end(sid, tell=False)
                pipe = self.pipes[sid] = _Pipe(sid, fds[0], self.rings[sid])
                pipe.ring.noted(time.monotonic_ns())
                self.selector.register(fds[0], selectors.EVENT_READ, pipe)
            elif kind == b"S":
                self.end(sid, tell=False)
                self.rings.pop(sid, None)

    def end(self, sid: int, tell: bool = True) -> None:
        """Close source ``sid``'s pipe, if open; ``tell``: say so to the daemon."""
        pipe = self.pipes.pop(sid, None)
        if pipe is None:
            return
        self.selector.unregister(pipe.fd)
        os.close(pipe.fd)
        if tell:
            self.news.append((b"D", sid))

    def round(self) -> bool:
        """Read every pipe that has data, take the daemon's commands; False once the daemon has gone."""
        for key, _ in self.selector.select(0.1):
            pipe = key.data
            if pipe is None:
                if not self.commands():
                    return False
            elif self.pipes.get(pipe.sid) is pipe:
                if not pipe.read():
                    self.end(pipe.sid)
                elif not pipe.started and pipe.ring.written:
                    pipe.started = True
                    self.news.append((b"R", pipe.sid))
        try:
            for kind, sid in self.news:
                send_message(self.sock, kind, {"id": sid})
        except OSError:
            return False
        self.news.clear()
        return True


def main(fd: int) -> int:
    """The reader's loop: a round, then a pause for the pipes to fill, until the daemon goes."""
    reader = _Reader(child_socket(fd))
    while reader.round():
        time.sleep(SLICE_S if len(reader.pipes) <= MANY else SLICE_MANY_S)
    return 0


class ReadPipe:
    """The daemon's view of one child's stdout in the reader (a :class:`~instrumentd.daemon.sources.ChildPipe`):
    ``done`` is set once the reader has finished it (``lost``: because the reader exited); ``samples`` it
    delivered; ``last_data``, when input last came."""

    def __init__(self, ring: SharedRing):
        self.ring = ring
        self.first = ring.written  # the ring's position when the child started
        self.started = time.monotonic()
        self.done = threading.Event()
        self.lost = False

    @property
    def samples(self) -> int:
        return self.ring.written - self.first

    @property
    def last_data(self) -> float:
        return max(self.started, self.ring.last_input)


class PipeReader(Helper):
    """The daemon's side: gives each source a shared ring, hands the reader each new child's stdout, and
    notes what it reports."""

    module = "instrumentd.daemon.pipe_reader"
    title = "pipe reader"

    def __init__(self):
        super().__init__()
        self._pipes: dict[int, tuple[object, ReadPipe]] = {}  # source id -> (source, its open pipe)
        self._rings: set[int] = set()  # ids of the sources whose ring the running reader has
        self._next_id = 0

    def share(self, source) -> None:
        """Give ``source`` (not started, its ring empty) a ring in shared memory of the same size; its
        memfd stays open in ``source.ring_fd`` until :meth:`forget`."""
        with self._lock:
            source.reader_id = self._next_id
            self._next_id += 1
        capacity = source.ring.capacity
        source.ring_fd, mem = shared_memory(source.name, capacity)
        source.ring = SharedRing(mem, capacity, source.ring.rate)

    def add(self, stdout, source) -> ReadPipe:
        """Read ``stdout`` (the file of a new child's pipe, closed here once handed over) into ``source``'s
        ring; the reader is started first if it is not running."""
        sid = source.reader_id
        pipe = ReadPipe(source.ring)
        try:
            with self._lock:
                sock = self._socket()
                fresh = sid not in self._rings
                self._rings.add(sid)
                self._pipes[sid] = (source, pipe)
            if fresh:
                self.send(b"A", {"id": sid, "capacity": source.ring.capacity}, [source.ring_fd], sock)
            self.send(b"P", {"id": sid}, [stdout.fileno()], sock)
        except OSError as exc:
            log.error("source %s: the pipe reader is gone (%s)", source.name, exc)
            with self._lock:
                self._pipes.pop(sid, None)
            pipe.lost = True
            pipe.done.set()
        finally:
            stdout.close()
        return pipe

    def remove(self, pipe: ReadPipe) -> None:
        """Wait (at most :data:`DONE_WAIT_S`) until the reader has finished ``pipe``, whose child has exited."""
        pipe.done.wait(DONE_WAIT_S)

    def forget(self, source) -> None:
        """``source`` has ended: the reader lets its ring go, and so does the daemon's side of it."""
        with self._lock:
            sock = self._sock if source.reader_id in self._rings else None
            self._rings.discard(source.reader_id)
            self._pipes.pop(source.reader_id, None)
        if sock is not None:
            try:
                self.send(b"S", {"id": source.reader_id}, sock=sock)
            except OSError:
                pass  # the reader is gone: it holds nothing of the source's any more
        os.close(source.ring_fd)

    def handle(self, kind: bytes, body: dict) -> None:
        with self._lock:
            entry = self._pipes.get(body["id"]) if kind == b"R" else self._pipes.pop(body["id"], None)
        if entry is None:
            return
        source, pipe = entry
        if kind == b"R":
            source.flowing()
        else:
            pipe.done.set()

    def orphans(self) -> list:
        orphans = [pipe for _, pipe in self._pipes.values()]
        self._pipes.clear()
        self._rings.clear()
        return orphans

    def lost(self, orphans: list, code: int) -> None:
        """Each open pipe ends (its child is killed and restarted as after an outage); the next pipe
        starts a new reader."""
        if orphans:
            log.error("the pipe reader exited (code %s) while reading %d pipes", code, len(orphans))
        for pipe in orphans:
            pipe.lost = True
            pipe.done.set()


READER = PipeReader()  # the process's one pipe reader


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
