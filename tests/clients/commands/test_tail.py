"""``instrumentd tail``'s command line: one-line errors for bad flags, --stream and --topics against two real
daemons, --format text, and its exit codes (130 on Ctrl-C, 0 into a closed pipe)."""

import select
import signal
import subprocess
import sys

import pytest

from instrumentd.daemon.events import decode
from instrumentd.model.classes import CLASSES

from ...conftest import served_daemon
from ..conftest import wait_for


@pytest.mark.parametrize("args,message", [
    (["--topics", "window,nope"], "--topics"),
    (["--instrument", "kazoo"], "kazoo"),
    (["--min-prob", "1.5"], "--min-prob"),
    (["--connect", "localhost:5555"], "--connect 'localhost:5555'"),
    (["--replay", "localhost:5556"], "--replay 'localhost:5556'"),
])
def test_bad_flags_are_one_line(args, message):
    out = subprocess.run([sys.executable, "-m", "instrumentd", "tail", *args], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr


def _tail(*args, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "instrumentd", "tail", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def _lines(proc: subprocess.Popen, until, timeout: float = 60.0) -> list[dict]:
    """Decode proc's stdout lines (each must be a valid event) until ``until(events)``."""
    got: list[dict] = []

    def more():
        if select.select([proc.stdout], [], [], 0.1)[0]:
            line = proc.stdout.readline()
            assert line, f"tail ended early: {proc.stderr.read()}"
            got.append(decode(line))
        return until(got)

    wait_for(more, timeout, f"tail output ({len(got)} events so far)")
    return got


@pytest.fixture(scope="module")
def two_daemons(tmp_path_factory, program):
    """Two daemons, streams ``a`` and ``b``, at a 0.5 s hop on the same real-time program."""
    tmp = tmp_path_factory.mktemp("tail")
    with served_daemon(tmp, ["a=file:" + str(program)], "--hop", "0.5") as a, \
            served_daemon(tmp, ["b=file:" + str(program)], "--hop", "0.5") as b:
        for d in (a, b):
            d.wait_ready()
        yield a, b


@pytest.mark.slow
def test_tail_two_daemons_filters_and_ctrl_c(two_daemons):
    a, b = two_daemons
    both = _tail("--connect", a.pub, "--connect", b.pub)
    only_a = _tail("--connect", a.pub, "--connect", b.pub, "--stream", "a", "--topics", "window,status")
    try:
        events = _lines(both, lambda ev: {e["stream"] for e in ev} == {"a", "b"})
        assert all(e["type"] in ("window", "segment") for e in events)
        events = _lines(only_a, lambda ev: sum(e["type"] == "window" for e in ev) >= 4
                        and any(e["type"] == "status" for e in ev))
        windows = [e for e in events if e["type"] == "window"]
        assert {e["stream"] for e in windows} == {"a"}
        assert all(e["type"] != "segment" for e in events)
        seqs = [e["seq"] for e in windows]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert set(windows[0]["probabilities"]) == set(CLASSES)
    finally:
        for proc in (both, only_a):
            proc.send_signal(signal.SIGINT)
    for proc in (both, only_a):
        assert proc.wait(20) == 130
        assert "Traceback" not in proc.stderr.read()


@pytest.mark.slow
def test_tail_into_a_closed_pipe_exits_quietly(two_daemons):
    a, _ = two_daemons
    proc = _tail("--connect", a.pub, "--topics", "window,status")
    _lines(proc, lambda ev: len(ev) >= 2)
    proc.stdout.close()  # as `| head -n 2` does once it has its lines
    assert proc.wait(20) == 0
    assert proc.stderr.read() == ""


@pytest.mark.slow
def test_no_daemon_waits_then_ctrl_c():
    """Ctrl-C ends it with 130 even when it starts with SIGINT ignored, as a script's background job does."""
    proc = _tail("--connect", "tcp://127.0.0.1:9",  # nothing listens: ZeroMQ keeps retrying
                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert "waiting" in proc.stderr.readline()
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 130
    out, err = proc.communicate()
    assert out == "" and "Traceback" not in err


def test_tail_text_against_a_publisher(publishing):
    import re

    proc = _tail("--connect", publishing.pub, "--format", "text", "--topics", "window,segment,status")
    try:
        publishing.wait_subscribers()
        publishing.window("radio", "vio", 0.97, labels=("vio",))
        publishing.segment("radio", "vio", "start")
        publishing.status({"radio": "running"})
        lines = [proc.stdout.readline().rstrip("\n") for _ in range(3)]  # flushed line by line
        assert re.fullmatch(r"\d\d:\d\d:\d\d radio Violin 0\.97", lines[0])
        assert re.fullmatch(r"\d\d:\d\d:\d\d radio start Violin", lines[1])
        assert re.fullmatch(r"\d\d:\d\d:\d\d status up 1 s radio=running", lines[2])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
