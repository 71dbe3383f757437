"""A daemon's helper process: a child that writes shared rings for the daemon, and the socket between them.

Two helpers fill rings in shared memory outside the daemon's one interpreter: the file player
(daemon/file_player.py) and the pipe reader (daemon/pipe_reader.py). Both talk with the daemon over
one ``AF_UNIX`` ``SOCK_SEQPACKET`` socket pair, one message per datagram: a letter, then a JSON
object, with file descriptors attached where a message hands over memory or a pipe. A helper
imports little (it starts in a fraction of a second), ignores SIGINT and SIGTERM, and exits when the
daemon's end of the socket closes, however the daemon ended.

:class:`Helper` is the daemon's side: it starts the child with the first :meth:`Helper.send` (or
:meth:`Helper.start`), hands each message the child sends to :meth:`Helper.handle` from a thread that
sleeps on the socket, and, when the child exits, hands what it was working on to :meth:`Helper.lost`;
the next message starts a new child.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import threading

log = logging.getLogger("instrumentd.daemon.helper_process")

MAX_MESSAGE = 1 << 16  # bytes of one message at most (a command names a path of up to 4 KiB)


def send_message(sock: socket.socket, kind: bytes, body: dict, fds: list[int] | None = None) -> None:
    """One message ``kind`` (a letter) with ``body``, and ``fds`` attached, waiting for room on ``sock``
    even when it is otherwise read without waiting."""
    blocking = sock.getblocking()
    sock.setblocking(True)
    try:
        if fds:
            socket.send_fds(sock, [kind + json.dumps(body).encode()], fds)
        else:
            sock.send(kind + json.dumps(body).encode())
    finally:
        sock.setblocking(blocking)


def receive_message(sock: socket.socket) -> tuple[bytes, dict, list[int]] | None:
    """The next message on ``sock``: ``(kind, body, fds)``; None once the other side has gone. Raises
    ``BlockingIOError`` when a socket read without waiting has none."""
    try:
        msg, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 4)
    except BlockingIOError:  # an OSError too, but not the end: the caller reads again later
        raise
    except OSError:
        return None
    if not msg:
        return None
    return msg[:1], json.loads(msg[1:]), fds


def child_socket(fd: int) -> socket.socket:
    """In a helper: its end of the socket, read without waiting; SIGINT and SIGTERM are ignored (the
    helper ends when the daemon's end closes)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock


class Helper:
    """The daemon's side of one helper process, running ``python -m`` :attr:`module` with its socket.

    Subclasses say what a message from the child means (:meth:`handle`) and what is lost when the
    child exits (:meth:`lost`), under names of their own for the work they hand it.
    """

    module = ""  # the helper's module, run with its end of the socket's descriptor as its argument
    title = "helper"  # names the helper in log lines

    def __init__(self):
        self._lock = threading.Lock()  # the socket and the process, and the subclass's own work
        self._send_lock = threading.Lock()  # one message on the socket at a time (never held with _lock)
        self._sock: socket.socket | None = None
        self._child: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        """True where rings can be shared with a child process: ``memfd_create``, fd passing, and x86-64's
        ordering of loads and stores (:class:`~instrumentd.daemon.ringbuffer.SharedRing`)."""
        return (hasattr(os, "memfd_create") and hasattr(socket, "send_fds")
                and platform.machine().lower() in ("x86_64", "amd64"))

    @property
    def pid(self) -> int | None:
        """The helper's process id while it runs."""
        return self._child.pid if self._child is not None and self._child.poll() is None else None

    def start(self) -> None:
        """Start the helper now, if it is not running (else the first :meth:`send` starts it): it then
        imports its modules while the daemon does other work."""
        with self._lock:
            self._socket()

    def _socket(self) -> socket.socket:
        """The running helper's socket, the helper started first if needed; ``_lock`` held."""
        if self._sock is None:
            self._launch()
        return self._sock

    def send(self, kind: bytes, body: dict, fds: list[int] | None = None,
             sock: socket.socket | None = None) -> None:
        """Send one message to the helper (started if it is not running), or to ``sock``, the one a
        caller took under ``_lock`` with its own bookkeeping. Raises ``OSError`` when it has gone."""
        if sock is None:
            with self._lock:
                sock = self._socket()
        with self._send_lock:
            send_message(sock, kind, body, fds)

    def _launch(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            # the interpreter that runs the daemon, by /proc/self/exe: its path may lie where the daemon's
            # user cannot look (a service account and an interpreter under another user's home), and
            # argv[0] keeps sys.executable, so that its virtual environment is found again
            self._child = subprocess.Popen([sys.executable, "-m", self.module, str(theirs.fileno())],
                                           executable="/proc/self/exe", pass_fds=[theirs.fileno()],
                                           stdin=subprocess.DEVNULL)
        self._sock = ours
        threading.Thread(target=self._listen, args=(ours, self._child), name=self.title.replace(" ", "-"),
                         daemon=True).start()
        log.info("%s started (pid %d)", self.title, self._child.pid)

    def _listen(self, sock: socket.socket, child: subprocess.Popen) -> None:
        while True:
            message = receive_message(sock)
            if message is None:
                break
            kind, body, fds = message
            for fd in fds:
                os.close(fd)
            self.handle(kind, body)
        self._gone(sock, child)

    def _gone(self, sock: socket.socket, child: subprocess.Popen) -> None:
        """The helper exited (or the socket broke): what it worked on is lost; the next message starts a new one."""
        try:
            code = child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            code = child.wait()
        with self._lock:
            if self._sock is sock:
                self._sock, self._child = None, None
            orphans = self.orphans()
        sock.close()
        self.lost(orphans, code)

    def handle(self, kind: bytes, body: dict) -> None:
        """A message from the helper (in its listening thread)."""
        raise NotImplementedError

    def orphans(self) -> list:
        """What the helper was working on, forgotten now that it has exited; ``_lock`` held."""
        raise NotImplementedError

    def lost(self, orphans: list, code: int) -> None:
        """The helper exited with ``code`` while working on ``orphans`` (in its listening thread)."""
        raise NotImplementedError
