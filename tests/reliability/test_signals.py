"""The commands that use the one signal helper stop cleanly on SIGHUP (the terminal closed), SIGTERM,
and a second Ctrl-C (tests/daemon/test_signals.py tests the helper itself)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest

from ..conftest import free_port, read_log
from .conftest import windows_of


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_the_proxy_stops_cleanly_on_sighup_and_sigterm(sig):
    proc = subprocess.Popen([sys.executable, "-m", "instrumentd", "-v", "proxy", "--backend",
                             f"tcp://127.0.0.1:{free_port()}", "--frontend", f"tcp://127.0.0.1:{free_port()}"],
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # its start-up line: the handlers are in place
            if "proxy: events" in line:
                break
        proc.send_signal(sig)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_sighup_stops_serve_cleanly_with_its_segments_closed(daemon, subscriber, wav):
    d = daemon([f"a=file:{wav(60.0)}"], "--hop", "0.5")
    sub = subscriber(d.pub)
    got = sub.events(lambda got: any(e["type"] == "segment" and e["state"] == "start" for e in got), timeout=90)
    d.proc.send_signal(signal.SIGHUP)
    assert d.wait(60) == 0, d.log_text()
    got += sub.drain()
    ends = [e for e in got if e["type"] == "segment" and e["state"] == "end"]
    assert ends and all(e["reason"] == "shutdown" for e in ends), got[-3:]
    assert "SIGHUP: finishing the windows already heard" in d.log_text()
    logged = read_log(d.log_dir, "a")
    # the stream's last events: its segments closed, then the source's end (reason shutdown)
    assert logged[-1]["type"] == "source" and logged[-1]["state"] == "ended" and logged[-1]["reason"] == "shutdown"
    assert logged[-2]["type"] == "segment" and logged[-2]["state"] == "end"
    assert [e["seq"] for e in logged] == list(range(len(logged))) and windows_of(got)


@pytest.mark.slow
def test_a_second_ctrl_c_makes_serve_exit_without_finishing(daemon, subscriber, wav):
    clip = wav(120.0)  # read as fast as it decodes: each stream's ring (5 s of audio) stays full
    d = daemon([f"s{i}=file+fast:{clip}" for i in range(4)], "--hop", "0.5")
    sub = subscriber(d.pub, ("window.",))
    sub.events(lambda got: len(got) >= 1, timeout=90)
    time.sleep(2.0)  # the fast files fill their rings
    d.proc.send_signal(signal.SIGINT)
    # finishing what the rings hold takes a quiet 2-core machine about 0.7 s since a closed ring is due
    # at once: the second Ctrl-C must come while that is under way
    time.sleep(0.2)
    assert d.proc.poll() is None, "still finishing the windows already heard"
    d.proc.send_signal(signal.SIGINT)
    assert d.wait(30) == 0, d.log_text()
    text = d.log_text()
    # each line says how much heard audio waits: the first, the rings' backlog of all four streams;
    # the second, what is left of it
    first = re.search(r"SIGINT: finishing the windows already heard \(([\d.]+) s of audio in (\d+) stream", text)
    second = re.search(r"second SIGINT: the windows still in the rings are not analysed \(([\d.]+) s of audio", text)
    assert first and second, text[-2000:]
    assert int(first[2]) == 4 and float(first[1]) > 10.0 and 0 < float(second[1]) <= float(first[1])
    assert "Traceback" not in text
