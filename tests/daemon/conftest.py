"""Daemon fixtures: short real audio files, subscribers, a real HTTP audio server. The served daemon
itself is tests/conftest.py's."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import zmq

from instrumentd.daemon.events import decode

SR = 44100


def melody(seconds: float, sr: int = SR, channels: int = 1) -> np.ndarray:
    """A sequence of 0.5 s sine notes (A3 up a scale) with a little noise: ``float32 [n, channels]``."""
    t = np.arange(int(seconds * sr)) / sr
    freqs = 220.0 * 2 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12]) / 12)
    f = freqs[(t / 0.5).astype(int) % len(freqs)]
    x = 0.4 * np.sin(2 * np.pi * np.cumsum(f) / sr) + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


@pytest.fixture(params=["process", "thread"])
def player(request, monkeypatch):
    """Which plays paced files: the file player process, or the pacer thread (where there is no memfd)."""
    from instrumentd.daemon import sources

    if request.param == "process" and not sources.PLAYER.available():
        pytest.skip("no memfd here: paced files play in a thread")
    if request.param == "thread":
        monkeypatch.setattr(sources.PLAYER, "available", lambda: False)
    return request.param


@pytest.fixture(params=["process", "thread"])
def pipes(request, monkeypatch):
    """Which reads the ``ffmpeg:`` children's pipes: the pipe reader process, or the daemon's hub thread
    (where there is no memfd)."""
    from instrumentd.daemon import sources

    if request.param == "process" and not sources.READER.available():
        pytest.skip("no memfd here: pipes are read in a thread")
    if request.param == "thread":
        monkeypatch.setattr(sources.READER, "available", lambda: False)
    return request.param


@pytest.fixture
def wav(tmp_path):
    """``wav(seconds, sr=44100, channels=1) -> Path`` of a real 16-bit WAV file."""

    def make(seconds: float, sr: int = SR, channels: int = 1, name: str = "clip.wav") -> Path:
        path = tmp_path / name
        soundfile.write(path, melody(seconds, sr, channels), sr, subtype="PCM_16")
        return path

    return make


class Subscriber:
    """A SUB socket on every topic; :meth:`events` collects decoded events."""

    def __init__(self, endpoint: str, topics: tuple[str, ...] = ("",)):
        self.socket = zmq.Context.instance().socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RECONNECT_IVL, 10)  # ms: connected soon after a daemon binds
        for t in topics:
            self.socket.setsockopt_string(zmq.SUBSCRIBE, t)
        self.socket.connect(endpoint)

    def events(self, until, timeout: float = 60.0) -> list[dict]:
        """Receive until ``until(events)`` is true; fails the test after ``timeout`` s."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while not until(got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout} s with {len(got)} events: {got[-3:]}")
            if self.socket.poll(min(left, 0.5) * 1000):
                topic, body = self.socket.recv_multipart()
                event = decode(body)
                assert topic.decode() == (event["type"] if event["type"] == "status" else f"{event['type']}.{event['stream']}")
                got.append(event)
        return got

    def drain(self, quiet: float = 1.0) -> list[dict]:
        """Every event still queued or arriving, until none has come for ``quiet`` s."""
        got: list[dict] = []
        while self.socket.poll(quiet * 1000):
            got.append(decode(self.socket.recv_multipart()[1]))
        return got

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def subscriber():
    made = []

    def make(endpoint: str, topics: tuple[str, ...] = ("",)) -> Subscriber:
        s = Subscriber(endpoint, topics)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def windows_of(events: list[dict], stream: str | None = None) -> list[dict]:
    return [e for e in events if e["type"] == "window" and (stream is None or e["stream"] == stream)]


class AudioHTTPServer:
    """A real HTTP server on loopback, in a thread: the files of ``folder`` (with ``Content-Length``; a
    missing one is a 404) and ``/live.wav``, an endless WAV sent chunked in real time, 50 ms at a time.

    :meth:`drop` makes the live stream hang up and answer 503 to every reconnection until
    :meth:`resume`; :meth:`stall` keeps the connection open and sends nothing until then; after
    :meth:`remove` it hangs up and answers 404. ``drops``
    and ``resumes`` hold the ``time.monotonic()`` of each.

    The live stream is 48 kHz mono: ffmpeg reads about 200 kB of a live WAV before its first output,
    2 s of wall time at this rate (5.5 s at 16 kHz).
    """

    def __init__(self, folder: Path, sr: int = 48000):
        import functools
        import http.server
        import struct
        import threading

        self.sr = sr
        self.on_air = threading.Event()
        self.on_air.set()
        self.stalled = threading.Event()
        self.removed = False  # /live.wav answers 404 from now on
        self.drops: list[float] = []
        self.resumes: list[float] = []
        self.connections = 0
        pcm = (melody(20.0, sr)[:, 0] * 32767).astype("<i2").tobytes()
        header = (b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WAVEfmt " +
                  struct.pack("<IHHIIHH", 16, 1, 1, sr, 2 * sr, 2, 16) + b"data" + struct.pack("<I", 0xFFFFFFD0))
        owner = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path != "/live.wav":
                    return super().do_GET()
                owner.connections += 1
                if owner.removed:
                    self.send_error(404)
                    return
                if not owner.on_air.is_set():
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                chunk = sr // 20 * 2  # 50 ms
                t0, sent = time.monotonic(), 0
                try:
                    self._chunk(header)
                    while owner.on_air.is_set():
                        if owner.stalled.is_set():
                            time.sleep(0.05)
                            t0 += 0.05  # the audio it would have sent meanwhile is lost, as on the air
                            continue
                        self._chunk(pcm[(sent * chunk) % len(pcm):][:chunk])
                        sent += 1
                        time.sleep(max(0.0, t0 + sent * 0.05 - time.monotonic()))
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass
                self.close_connection = True

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def log_message(self, *args) -> None:
                pass

        handler = functools.partial(Handler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def drop(self) -> None:
        self.drops.append(time.monotonic())
        self.on_air.clear()

    def remove(self) -> None:
        """The live stream hangs up and is gone for good: 404 from now on."""
        self.removed = True
        self.on_air.clear()

    def stall(self) -> None:
        self.drops.append(time.monotonic())
        self.stalled.set()

    def resume(self) -> None:
        self.resumes.append(time.monotonic())
        self.stalled.clear()
        self.on_air.set()

    def close(self) -> None:
        self.on_air.clear()
        self.stalled.clear()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_audio(tmp_path):
    """``http_audio(folder) -> AudioHTTPServer``, shut down at the end."""
    made = []

    def make(folder: Path) -> AudioHTTPServer:
        made.append(AudioHTTPServer(folder))
        return made[-1]

    yield make
    for s in made:
        s.close()


def source_events(events: list[dict], stream: str) -> list[tuple[str, str]]:
    """``(state, reason)`` of each ``source`` event of ``stream``, in order."""
    return [(e["state"], e["reason"]) for e in events if e["type"] == "source" and e["stream"] == stream]


class NotifySocket:
    """A datagram unix socket standing in for systemd's ``NOTIFY_SOCKET``."""

    def __init__(self, abstract: bool = False):
        self.folder = Path(tempfile.mkdtemp(prefix="notify-", dir="/tmp"))
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"instrumentd-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = str(self.folder / "notify")
            self.sock.bind(self.address)

    def wait_for(self, state: str, timeout: float = 90.0) -> list[str]:
        """Every message until one holding ``state``."""
        got, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                got.append(self.sock.recv(4096).decode())
            except TimeoutError:
                break
            if state in got[-1].split("\n"):
                return got
        raise AssertionError(f"no {state} within {timeout} s; got {got}")

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def notify_socket(monkeypatch):
    made = NotifySocket()
    monkeypatch.setenv("NOTIFY_SOCKET", made.address)
    yield made
    made.close()
