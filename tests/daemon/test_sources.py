"""Sources on their own: an ``ffmpeg:`` network input that stalls is an outage, noted ``down`` then ``up``."""

from __future__ import annotations

import shutil
import threading

import pytest

from instrumentd.daemon import sources
from instrumentd.daemon.config import parse_source

from ..conftest import live_children, until


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_a_network_input_that_stalls_without_hanging_up_goes_down_and_comes_back(http_audio, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "NETWORK_STALL", 1.0)
    server = http_audio(tmp_path)
    radio = sources.open_source(parse_source(f"radio=ffmpeg:{server.url}/live.wav"), 10.0)
    assert radio.stall_s == 1.0 and radio.live is False
    done = threading.Event()

    def read() -> None:  # as the worker would: an ffmpeg source waits for room in its ring
        while not done.wait(0.05):
            radio.ring.read()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    children = live_children()
    try:
        radio.start()
        assert until(lambda: radio.ring.written > 0, 30), "no audio from the live stream"
        assert list(radio.changes) == [("running", "audio flowing")]
        server.stall()  # the connection stays open; nothing comes
        assert until(lambda: len(radio.changes) >= 2, 10)
        assert radio.changes[1] == ("down", "ffmpeg exited (no audio for 1 s)") and radio.state == "restarting"
        server.resume()
        assert until(lambda: len(radio.changes) >= 3, 30)
        state, reason = radio.changes[2]
        assert state == "up" and reason.startswith("audio back after ") and radio.state == "running"
        assert radio.restarts >= 1 and radio.ring.breaks == radio.restarts and server.connections >= 2
    finally:
        radio.stop()
        done.set()
        reader.join()
    assert live_children().items() <= children.items()  # no ffmpeg child left behind
