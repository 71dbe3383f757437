"""A ``mic:`` source whose device vanishes (its JACK server is killed) is reopened with backoff, and the others go on."""

from __future__ import annotations

import os

import pytest

from instrumentd.daemon.config import parse_source
from instrumentd.daemon.sources import PLAYER, open_source

from ..conftest import live_children, start_jackd, until


pytestmark = pytest.mark.slow


def test_mic_reopens_after_its_jack_server_dies_and_returns(monkeypatch, wav, caplog):
    name = f"instrumentd-reconnect-{os.getpid()}"
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    jack = start_jackd(name)
    mic = open_source(parse_source("studio=mic"), 5.0)
    other = open_source(parse_source(f"radio=file:{wav(60.0)}"), 5.0)
    children = live_children()
    try:
        mic.start()
        other.start()
        assert until(lambda: mic.ring.written >= mic.rate // 2, 15), "no audio from the JACK device"
        assert mic.state == "running" and mic.restarts == 0

        jack.kill()  # the device disappears mid-run
        jack.wait()
        assert until(lambda: mic.state == "restarting" and mic.restarts >= 1, 5)
        written = mic.ring.written
        other_before = other.ring.written
        # at least one reopen fails while the server is gone; each reopen starts a Python child, which
        # takes a second or more on a loaded 2-core machine before it can fail
        assert until(lambda: mic.restarts >= 2, 15), mic.restarts
        assert mic.state == "restarting"
        assert mic.ring.written == written and not mic.ring.closed
        assert other.state == "running" and other.ring.written > other_before  # the other stream went on

        jack = start_jackd(name)  # the device comes back
        assert until(lambda: mic.state == "running" and mic.ring.written >= written + mic.rate // 2, 15)
        assert mic.ring.breaks == mic.restarts  # each reopen marks a break: the features start over
        before, _, _ = mic.ring.read()  # a read stops at the break ...
        after, start, broken = mic.ring.read()  # ... and the next one reports it
        assert len(before) and broken and start == written and len(after) >= mic.rate // 2
        assert "source studio: input device exited" in caplog.text
    finally:
        mic.stop()
        other.stop()
        jack.terminate()
        jack.wait(10)
    left = live_children().keys() - children.keys() - {PLAYER.pid}  # the file player stays for the process
    assert not left  # no capture child left behind
