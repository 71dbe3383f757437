"""``bridge osc`` sending to a real python-osc server on loopback."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading

import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer

from instrumentd.clients.bridge_osc import Settings, segment_message, window_messages
from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.errors import ParameterError

from .conftest import wait_for


class Receiver:
    """An OSC server on a free UDP port of loopback that keeps every ``(address, value)`` it gets."""

    def __init__(self):
        self.got: list[tuple[str, object]] = []
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(lambda address, *values: self.got.append((address, *values)))
        self.server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
        self.url = f"udp://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    with contextlib.closing(Receiver()) as r:
        yield r


def test_addresses(publishing):
    window = publishing.window("radio", "vio", 0.97, labels=("vio",), level_db=-12.5, send=False)
    messages = window_messages("/instrumentd", window)
    assert messages[:2] == [("/instrumentd/radio/top", "vio"), ("/instrumentd/radio/level", -12.5)]
    assert [a for a, _ in messages[2:]] == [f"/instrumentd/radio/{c}" for c in CLASSES]
    no_level = window_messages("/show", publishing.window("radio", "vio", level_db=None, send=False))
    assert [a for a, _ in no_level if a.endswith("/level")] == []  # no level reported: none invented
    assert segment_message("/x", publishing.segment("radio", "vio", "start", send=False)) == ("/x/radio/on/vio", 1)
    assert segment_message("/x", publishing.segment("radio", "vio", "end", send=False)) == ("/x/radio/off/vio", 1)
    for bad in ({"osc": "udp://127.0.0.1"}, {"osc": "tcp://h:1"}, {"prefix": "instrumentd"}, {"prefix": "/a b"}):
        with pytest.raises(ParameterError):
            Settings(**bad)


@pytest.mark.slow
def test_bridge_sends_what_the_daemon_publishes(tmp_path, publishing, receiver):
    err = open(tmp_path / "bridge.log", "wb")
    bridge = subprocess.Popen([sys.executable, "-m", "instrumentd", "bridge", "osc", "--connect", publishing.pub,
                               "--osc", receiver.url, "--stream", "radio"], stdout=subprocess.DEVNULL, stderr=err)
    try:
        publishing.wait_subscribers()
        publishing.window("radio", "flu", 0.8, level_db=-30.0)
        publishing.window("radio-2", "cla", 0.8)  # another stream whose name starts the same: not asked for
        publishing.segment("radio", "vio", "start")
        publishing.window("radio", "vio", 0.97, labels=("vio",), level_db=-12.5)
        publishing.segment("radio", "vio", "end")
        wait_for(lambda: ("/instrumentd/radio/off/vio", 1) in receiver.got, 20, "the segment's end")
        got = list(receiver.got)
        assert all("radio-2" not in address for address, _ in got)
        assert [v for a, v in got if a == "/instrumentd/radio/top"] == ["flu", "vio"]
        assert [v for a, v in got if a == "/instrumentd/radio/level"] == [-30.0, -12.5]
        assert [v for a, v in got if a == "/instrumentd/radio/vio"] == [pytest.approx(0.02), pytest.approx(0.97)]
        assert sum(a == "/instrumentd/radio/cel" for a, _ in got) == 2
        on, off = got.index(("/instrumentd/radio/on/vio", 1)), got.index(("/instrumentd/radio/off/vio", 1))
        assert on < [a for a, _ in got].index("/instrumentd/radio/vio", on) < off  # in the daemon's order
        bridge.send_signal(signal.SIGINT)
        assert bridge.wait(20) == 0
        log = (tmp_path / "bridge.log").read_text()
        assert "Traceback" not in log and "28 OSC messages sent, 0 failed" in log
    finally:
        bridge.kill()
