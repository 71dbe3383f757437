"""``instrumentd proxy``: three daemons behind one endpoint, replay routed to the daemon that owns the stream."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq

from instrumentd.daemon.eventlog import EventLog
from instrumentd.daemon.events import EventError, decode, window_event
from instrumentd.daemon.replay import ReplayServer, replay
from instrumentd.model.classes import CLASSES

from ...conftest import ServedDaemon, free_port
from ..conftest import wait_for


class Proxy:
    """``instrumentd proxy`` as a child process on free loopback ports."""

    def __init__(self, backends: list[str], replay_backends: list[str], *extra: str):
        self.frontend = f"tcp://127.0.0.1:{free_port()}"
        self.replay = f"tcp://127.0.0.1:{free_port()}"
        args = [sys.executable, "-m", "instrumentd", "proxy", "--frontend", self.frontend,
                "--replay-frontend", self.replay, *extra]
        args += [a for b in backends for a in ("--backend", b)]
        args += [a for b in replay_backends for a in ("--replay-backend", b)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(20)
        return code, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def ask(endpoint: str, request: dict, timeout: float = 10.0) -> dict:
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    sock.connect(endpoint)
    try:
        sock.send(json.dumps(request).encode())
        return json.loads(sock.recv())
    finally:
        sock.close()


@pytest.mark.parametrize("args, message", [
    (["--backend", "tcp://127.0.0.1:1", "--frontend", "127.0.0.1:2"], "--frontend '127.0.0.1:2' is not tcp://"),
    (["--backend", "tcp://127.0.0.1:1", "--frontend", "tcp://0.0.0.0:2"], "'tcp://0.0.0.0:2' is reachable from other"),
    (["--backend", "tcp://127.0.0.1:1", "--frontend", "tcp://127.0.0.1:2", "--replay-frontend", "tcp://127.0.0.1:3"],
     "--replay-frontend and --replay-backend go together"),
    (["--backend", "tcp://127.0.0.1:1", "--frontend", "tcp://127.0.0.1:2", "--replay-backend", "tcp://127.0.0.1:3",
      "--replay-frontend", "tcp://127.0.0.1:2"], "--frontend and --replay-frontend must differ"),
    (["--backend", "tcp://127.0.0.1:1", "--frontend", "tcp://127.0.0.1:2", "--replay-timeout", "0"],
     "--replay-timeout must be positive seconds, got 0.0"),
])
def test_bad_flags_are_one_line(args, message, capsys):
    from instrumentd.clients.cli import main

    assert main(["proxy", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("instrumentd proxy: error: ") and message in err, err


class LogServer:
    """A daemon's replay endpoint serving a real event log with ``n`` window events per stream."""

    def __init__(self, folder, streams: list[str], n: int):
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.log = EventLog(folder)
        for name in streams:
            seq = self.log.open_stream(name)
            for i in range(n):
                self.log.append(window_event(name, seq + i, i, i + 3.0, time.time(), np.full(11, 1 / 11),
                                             CLASSES, [], 5.0, "cross-test", False))
        self.server = ReplayServer(self.endpoint, self.log, zmq.Context())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if self.server.socket.poll(50):
                self.server.serve_pending()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.server.close()
        self.log.close()


@pytest.mark.slow
def test_replay_is_routed_to_the_owner_and_a_dead_backend_times_out(tmp_path):
    """Two real replay servers and one endpoint nobody serves, behind a real proxy process."""
    one = LogServer(tmp_path / "one", ["x", "y"], 3)
    two = LogServer(tmp_path / "two", ["z"], 1200)  # more than one page: the client pages through the proxy
    dead = f"tcp://127.0.0.1:{free_port()}"
    proxy = Proxy([f"tcp://127.0.0.1:{free_port()}"], [one.endpoint, dead, two.endpoint], "--replay-timeout", "1")
    try:
        t0 = time.monotonic()
        assert ask(proxy.replay, {}) == {"schema": 1, "streams": {"x": 2, "y": 2, "z": 1199}}
        assert time.monotonic() - t0 >= 1.0  # the dead backend was waited for, then left out
        assert [e["seq"] for e in replay(proxy.replay, "y", 1)] == [1, 2]
        assert [e["seq"] for e in replay(proxy.replay, "z", 150)] == list(range(150, 1200))
        assert ask(proxy.replay, {"stream": "x", "from_seq": -3})["error"] == \
            "from_seq must be a non-negative integer, got -3"  # the daemon's own answer, unchanged
        with pytest.raises(EventError, match="no replay backend serves stream 'nope'"):
            list(replay(proxy.replay, "nope"))
        assert ask(proxy.replay, {"stream": 5})["error"] == "stream must be a name, got 5"
        one.close()  # the owner of x goes away: its requests time out with an error naming it
        with pytest.raises(EventError, match=f"replay backend {one.endpoint} did not answer within 1 s"):
            list(replay(proxy.replay, "x"))
    finally:
        proxy.kill()
        two.close()
        if not one._stop.is_set():
            one.close()


@pytest.mark.slow
def test_three_daemons_one_proxy_subscribe_tail_and_replay(tmp_path, program):
    daemons = [ServedDaemon(tmp_path, [f"{name}=file:{program}"], "--hop", "0.5") for name in ("a", "b", "c")]
    proxy = Proxy([d.pub for d in daemons], [d.replay for d in daemons])
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt_string(zmq.SUBSCRIBE, "window.")
    sub.connect(proxy.frontend)
    tail = subprocess.Popen([sys.executable, "-m", "instrumentd", "tail", "--connect", proxy.frontend,
                             "--replay", proxy.replay, "--topics", "window"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got: dict[str, list[dict]] = {}

        def all_three():
            while sub.poll(100):
                topic, body = sub.recv_multipart()
                event = decode(body)
                assert topic.decode() == f"window.{event['stream']}"
                got.setdefault(event["stream"], []).append(event)
            return len(got) == 3 and all(len(v) >= 2 for v in got.values())

        wait_for(all_three, 120, "windows of a, b and c through the proxy")
        for name, events in got.items():
            seqs = [e["seq"] for e in events]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        lines = []

        def tail_saw_all():
            lines.append(decode(tail.stdout.readline()))
            return {e["stream"] for e in lines} == {"a", "b", "c"}

        wait_for(tail_saw_all, 60, "tail through the proxy")
        assert ask(proxy.replay, {})["streams"].keys() == {"a", "b", "c"}
        for d, name in zip(daemons, "abc"):
            replayed = list(replay(proxy.replay, name, 0))
            assert replayed and replayed == d.logged(name)[: len(replayed)]
            assert got[name][0] in replayed  # what came through the proxy is what the owner logged
    finally:
        sub.close()
        tail.send_signal(signal.SIGINT)
        tail.wait(20)
        for d in daemons:
            d.kill()
    code, err = proxy.stop()
    assert code == 0 and "Traceback" not in err
