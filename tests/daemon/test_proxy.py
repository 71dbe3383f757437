"""The event proxy and the replay router, in-process over inproc:// endpoints with real event logs."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from instrumentd.daemon.eventlog import EventLog
from instrumentd.daemon.events import EventError, decode, window_event
from instrumentd.daemon.proxy import EventProxy, ReplayRouter
from instrumentd.daemon.publisher import Publisher
from instrumentd.daemon.replay import ReplayServer, replay
from instrumentd.model.classes import CLASSES


def _event(stream: str, seq: int) -> dict:
    return window_event(stream, seq, seq, seq + 3.0, time.time(), np.full(11, 1 / 11), CLASSES, [], 5.0, "m", False)


def test_events_of_two_daemons_arrive_on_one_frontend():
    context = zmq.Context.instance()
    daemons = [Publisher(f"inproc://proxy-test-pub-{i}", 1000, context) for i in range(2)]
    proxy = EventProxy([d.endpoint for d in daemons], "inproc://proxy-test-front", context, context)
    proxy.start()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"window.")
    sub.connect("inproc://proxy-test-front")
    try:
        got: set[str] = set()
        deadline = time.monotonic() + 10
        seq = 0
        while got != {"a", "b"} and time.monotonic() < deadline:  # a subscription takes a moment to travel up
            daemons[0].publish(_event("a", seq))
            daemons[1].publish(_event("b", seq))
            seq += 1
            if sub.poll(50):
                got.add(decode(sub.recv_multipart()[-1])["stream"])
        assert got == {"a", "b"}
    finally:
        sub.close(0)
        proxy.close()
        for d in daemons:
            d.close()


class _Backend:
    """A daemon's replay endpoint: a real event log with ``n`` window events per stream, answered in a thread."""

    def __init__(self, folder, name: str, streams: list[str], n: int):
        self.endpoint = f"inproc://proxy-test-replay-{name}"
        self.log = EventLog(folder)
        for stream in streams:
            first = self.log.open_stream(stream)
            for i in range(n):
                self.log.append(_event(stream, first + i))
        self.server = ReplayServer(self.endpoint, self.log, zmq.Context.instance())
        self.server.start()

    def close(self) -> None:
        self.server.close()
        self.log.close()


@pytest.fixture
def router(tmp_path):
    one = _Backend(tmp_path / "one", "one", ["x", "y"], 3)
    two = _Backend(tmp_path / "two", "two", ["z"], 5)
    dead = "inproc://proxy-test-replay-nobody"
    nobody = zmq.Context.instance().socket(zmq.ROUTER)  # bound, never answers
    nobody.bind(dead)
    context = zmq.Context.instance()
    r = ReplayRouter("inproc://proxy-test-router", [one.endpoint, dead, two.endpoint], context, context,
                     timeout_s=0.5)
    stop = threading.Event()

    def serve():
        poller = zmq.Poller()
        for sock in r.sockets:
            poller.register(sock, zmq.POLLIN)
        while not stop.is_set():
            poller.poll(20)
            r.serve()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield "inproc://proxy-test-router"
    stop.set()
    thread.join()
    r.close()
    nobody.close(0)
    one.close()
    two.close()


def test_the_router_lists_every_stream_and_routes_each_to_its_owner(router):
    assert [e["seq"] for e in replay(router, "y", 1)] == [1, 2]
    assert [e["seq"] for e in replay(router, "z", 3)] == [3, 4]
    with pytest.raises(EventError, match="no replay backend serves stream 'nope'"):
        list(replay(router, "nope"))
