"""Shared fixtures: real fluidsynth renders, synthetic tones with known answers, a CPU/CUDA switch, and
the served daemon: :func:`run_server` (in this process) and :func:`served_daemon` (a child process)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
import zmq

SR = 44100


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "fluidsynth_available" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)  # every fluidsynth render goes through that fixture
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


def devices() -> list:
    """``cpu`` always, ``cuda`` as a gpu-marked param: parametrize tests over both."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def waiting_while_capturing(step):
    """``step`` (a method) made to wait for the device while a CUDA graph is being captured, which CUDA
    forbids: a step that cannot be captured."""
    def waits(self, *args):
        if torch.cuda.is_current_stream_capturing():
            torch.cuda.synchronize()
        return step(self, *args)
    return waits


@pytest.fixture(scope="session")
def fluidsynth_available() -> None:
    if shutil.which("fluidsynth") is None:
        pytest.skip("fluidsynth not installed (make system-deps)")


def tone(freq: float, seconds: float = 3.0, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    """A sine at ``freq`` hz, ``float32 [seconds * sr]``."""
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def notes(freqs, note_s: float = 0.4, rest_s: float = 0.1, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Harmonic notes (4 partials, 1/k) at each of ``freqs`` hz, each ``note_s`` s then ``rest_s`` s of
    silence, over a little white noise: ``float32 [len(freqs) * (note_s + rest_s) * sr]``."""
    t = np.arange(int(round(note_s * sr))) / sr
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms ramps: no clicks
    parts = []
    for f in freqs:
        x = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 5))
        parts += [0.3 * fade * x / np.abs(x).max(), np.zeros(int(round(rest_s * sr)))]
    x = np.concatenate(parts)
    return (x + 0.003 * np.random.default_rng(seed).standard_normal(len(x))).astype(np.float32)


@pytest.fixture(scope="session")
def renders(fluidsynth_available) -> dict[str, np.ndarray]:
    """Real 3 s fluidsynth renders (FluidR3_GM): a flute melody, piano chords, a violin with vibrato-free notes."""
    from instrumentd.training.midi import Note, Track
    from instrumentd.training.render import render

    flute = Track(73, 0, [Note(p, 0.05 + 0.5 * i, 0.45) for i, p in enumerate((72, 74, 76, 77, 79, 81))])
    piano = Track(0, 1, [Note(p, 0.0, 2.8, 80) for p in (48, 55, 64)])
    violin = Track(40, 2, [Note(p, 0.1 + 0.7 * i, 0.65) for i, p in enumerate((55, 62, 69, 76))])
    return {
        "flute": render([flute], "fluidr3", 3.0),
        "piano": render([piano], "fluidr3", 3.0),
        "violin": render([violin], "fluidr3", 3.0),
        "mix": render([flute, piano], "fluidr3", 3.0),
    }


def start_jackd(name: str) -> subprocess.Popen:
    """A JACK server named ``name`` on the dummy driver (no sound hardware); skips the test without jackd."""
    if shutil.which("jackd") is None:
        pytest.skip("jackd not installed (make system-deps)")
    proc = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", "44100", "-p", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    until(lambda: proc.poll() is not None or _jack_running(name), 10.0)
    if proc.poll() is not None:
        pytest.skip("jackd would not start here")
    return proc


def _jack_running(name: str) -> bool:
    """True once the JACK server ``name`` takes clients (``jack_wait``, from jackd's package, says so)."""
    if shutil.which("jack_wait") is None:
        time.sleep(1.5)  # no way to ask: give it the time it usually takes
        return True
    check = subprocess.run(["jack_wait", "--check", "--server", name], capture_output=True, text=True, timeout=10,
                           env={**os.environ, "JACK_NO_START_SERVER": "1"})
    return check.stdout.startswith("running")


def until(check, timeout: float) -> bool:
    """Poll ``check()`` every 50 ms until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback() -> str:
    """A ZeroMQ endpoint on a free loopback port: ``tcp://127.0.0.1:PORT``."""
    return f"tcp://127.0.0.1:{free_port()}"


def read_log(folder: Path, stream: str) -> list[dict]:
    """Every complete event in the event log ``folder`` for ``stream``, in file order (the last line of
    a file may be one being written: it is left out until it ends)."""
    out = []
    for path in sorted((Path(folder) / stream).glob("*.jsonl")):
        out += [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]
    return out


def first_status(pub: str, timeout: float, alive=lambda: None, ended=lambda: False) -> dict | None:
    """The first ``status`` event published on ``pub``; ``alive()`` may raise to stop waiting early, and
    once ``ended()`` is true there is none to wait for (None)."""
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt_string(zmq.SUBSCRIBE, "status")
    sock.connect(pub)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive()
            if sock.poll(100):
                return json.loads(sock.recv_multipart()[1])
            if ended():
                return None
        raise AssertionError(f"no status event on {pub} within {timeout} s")
    finally:
        sock.close()


class ServedDaemon:
    """``instrumentd serve`` as a child process on free loopback ports (``pub``, ``replay``), its event
    log in ``log_dir``, its stderr in ``stderr_path``; status heartbeats every 0.5 s. :meth:`start`
    again after :meth:`kill` restarts it on the same ports and log."""

    def __init__(self, folder: Path, sources: list[str], *extra: str, pub: str | None = None, stdin=None,
                 log_dir: Path | None = None, device: str = "cpu"):
        self.pub = pub or loopback()
        self.replay = loopback()
        self.log_dir = log_dir or folder / f"events-{free_port()}"
        self.stderr_path = folder / f"daemon-{time.monotonic_ns()}.log"
        self.args = [sys.executable, "-m", "instrumentd", "serve", "--pub", self.pub, "--replay", self.replay,
                     "--log-dir", str(self.log_dir), "--device", device, "--log-level", "debug", *extra]
        for s in sources:
            self.args += ["--source", s]
        self.stdin = stdin
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        env = {**os.environ, "INSTRUMENTD_HEARTBEAT": "0.5"}
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(self.args, stdin=self.stdin, stdout=subprocess.PIPE, stderr=err, env=env)

    def wait_ready(self, timeout: float = 90.0) -> dict:
        """Block until the daemon publishes a status event; returns it. Fails if the daemon exits first."""
        def alive():
            assert self.proc.poll() is None, f"daemon exited {self.proc.returncode}: {self.log_text()[-2000:]}"

        return first_status(self.pub, timeout, alive)

    def wait(self, timeout: float = 120) -> int:
        """The exit code, once the daemon ends by itself."""
        return self.proc.wait(timeout)

    def interrupt(self, timeout: float = 60) -> int:
        """SIGINT, as Ctrl-C: the daemon finishes its windows and exits (0); killed after ``timeout`` s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def log_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def logged(self, stream: str) -> list[dict]:
        """Every event in the daemon's log for ``stream``, in file order."""
        return read_log(self.log_dir, stream)


@contextlib.contextmanager
def served_daemon(folder: Path, sources: list[str], *extra: str, **kw) -> Iterator[ServedDaemon]:
    """``with served_daemon(tmp_path, ["a=file:x.wav"], "--hop", "0.5") as d:`` a real ``instrumentd
    serve`` process for the block (see :class:`ServedDaemon`), killed at its end."""
    d = ServedDaemon(folder, sources, *extra, **kw)
    try:
        yield d
    finally:
        d.kill()


@pytest.fixture
def daemon(tmp_path):
    """``daemon(sources, *flags, pub=None, stdin=None, log_dir=None, device="cpu") -> ServedDaemon``, for
    tests that start several or restart one; every daemon started is killed at the end of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda sources, *extra, **kw: stack.enter_context(served_daemon(tmp_path, sources, *extra, **kw))


class InProcessDaemon:
    """The daemon's real ``Server`` on a thread of this process: ``server``, ``pub``, ``replay``, ``log_dir``."""

    def __init__(self, folder: Path, sources: list[str], **settings):
        from instrumentd.daemon.config import load_config
        from instrumentd.daemon.server import Server

        settings = {"pub": loopback(), "replay": loopback(), "log_dir": str(folder / f"events-{free_port()}"),
                    "device": "cpu", "heartbeat": 0.5, "sources": sources, **settings}
        self.server = Server(load_config(env={}, **settings))
        self.pub, self.replay, self.log_dir = settings["pub"], settings["replay"], Path(settings["log_dir"])
        self._outcome: dict = {}
        self._thread = threading.Thread(target=self._run, name="in-process-daemon", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._outcome["code"] = self.server.run()
        except BaseException as exc:  # raised in the test by wait() or check()
            self._outcome["error"] = exc

    def check(self) -> None:
        """Raise what stopped the server, if anything did."""
        if "error" in self._outcome:
            raise self._outcome["error"]

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float = 120) -> int:
        """The exit code of ``Server.run()`` once it returns (every source ended, or a signal)."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the server still runs after {timeout} s"
        self.check()
        return self._outcome["code"]

    def interrupt(self, timeout: float = 60) -> int:
        """As Ctrl-C: the server finishes its windows and returns."""
        self.server.signals.handle(signal.SIGINT)
        return self.wait(timeout)

    def logged(self, stream: str) -> list[dict]:
        return read_log(self.log_dir, stream)


@contextlib.contextmanager
def run_server(folder: Path, sources: list[str], **settings) -> Iterator[InProcessDaemon]:
    """``with run_server(tmp_path, ["a=file+fast:x.wav"], hop_s=0.5) as d:`` the daemon's real ``Server``
    in a thread of this process, as uvicorn's tests run theirs: free loopback ports, heartbeats every
    0.5 s, on the CPU; ``settings`` are :class:`~instrumentd.daemon.config.Config` fields. Yields once
    the first status event is out (or the server has already stopped: every source ended); at the
    end it is stopped as by Ctrl-C, and a start-up or serving failure fails the test."""
    d = InProcessDaemon(folder, sources, **settings)
    try:
        first_status(d.pub, 90.0, d.check, ended=lambda: not d.running)
        yield d
    finally:
        code = d.interrupt()
    assert code == 0, f"the server returned {code}"


def one_line_error(text: str, command: str, *fragments: str) -> str:
    """Assert ``text`` (stderr) is exactly one line ``instrumentd COMMAND: error: ...`` naming every fragment."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith(f"instrumentd {command}: error: "), text
    assert "Traceback" not in text
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def instrumentd(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """``python -m instrumentd ARGS...`` as a user runs it: its exit code, stdout and stderr as text."""
    return subprocess.run([sys.executable, "-m", "instrumentd", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


def side_by_side(*calls):
    """Call each of ``calls`` (functions of no arguments) in a thread of its own, all at once; their results in
    order. For commands a test runs as child processes that do not depend on each other: most of such a
    command's time is its own start (torch's import) on one core, so two take about as long as one."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [f.result() for f in futures]


def live_children() -> dict[int, str]:
    """``{pid: command}`` of this process's children still running (an exited one not yet reaped is gone)."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except FileNotFoundError:  # the thread ended since the folder was listed
            continue
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except FileNotFoundError:
                continue
            command, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
            if state != "Z":
                out[int(pid)] = command
    return out
