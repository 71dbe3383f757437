"""The dashboard (:mod:`instrumentd.clients.dashboard`): its screen at every size, and in a real terminal."""

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from rich.console import Console

from instrumentd.clients.dashboard import STALE_S, Board, DaemonView, render
from instrumentd.daemon.events import segment_event, status_event, window_event
from instrumentd.model.classes import CLASSES, NAMES

from ..conftest import free_port
from .conftest import wait_for

ENDPOINT = "tcp://127.0.0.1:5555"


def _stream_status():
    return {"source": "x=file:x.wav", "state": "running", "level_db": -12.0, "windows": 9,
            "drops": {"audio_s": 0.0, "windows": 0}, "queue_s": 0.1, "latency_ms": {"p50": 120.0, "p99": 250.0},
            "restarts": 0, "seq": 9}


def _board(streams: list[str], seed: int = 0) -> Board:
    board = Board([ENDPOINT])
    rng = np.random.default_rng(seed)
    for name in streams:
        for seq in range(10):
            p = rng.dirichlet(np.full(11, 0.3))
            labels = [c for c, v in zip(CLASSES, p) if v >= 0.5]
            event = window_event(name, seq, seq, seq + 3.0, 0.0, p, CLASSES, labels, 30.0, "m", True)
            board.apply(ENDPOINT, event, 0.0)
        board.apply(ENDPOINT, segment_event(name, 10, "vio", "start", 4.0, None, None, 0.0, "m"), 0.0)
    board.apply(ENDPOINT, status_event(0.0, 5.0, "cpu", "m", True, 0, {n: _stream_status() for n in streams}), 0.0)
    return board


def _text(board: Board, width: int, height: int, now: float = 1.0) -> list[str]:
    console = Console(width=width, height=height, record=True, file=open("/dev/null", "w"), force_terminal=True)
    console.print(render(board, width, height, now))
    return console.export_text().rstrip("\n").split("\n")


def test_waiting_for_daemon():
    lines = _text(Board([ENDPOINT, "tcp://127.0.0.1:5557"]), 80, 24)
    assert len(lines) == 24 and any("Waiting for daemon" in line for line in lines)
    assert sum("waiting for daemon" in line for line in lines) == 2  # one header line per daemon


@pytest.mark.parametrize("n_streams", [1, 2, 5])
def test_fits_80x24(n_streams):
    lines = _text(_board([f"s{i}" for i in range(n_streams)]), 80, 24)
    assert len(lines) == 24 and max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    assert "p50 120 p99 250 ms" in text and "s0" in text
    if n_streams == 1:  # all 11 bars and the segment log
        assert all(NAMES[c] in text for c in CLASSES) and "▶ Violin" in text
    if n_streams == 5:
        assert "more stream" in text


def test_uses_more_room_when_it_has_it():
    lines = _text(_board(["a", "b", "c"]), 200, 50)
    assert len(lines) == 50 and max(len(line) for line in lines) <= 200
    assert max(line.count("╭─") for line in lines) == 3  # side by side
    assert sum(line.count(NAMES["voi"]) for line in lines) == 3  # all 11 bars in every panel


def test_several_daemons_each_with_its_panels():
    other = "tcp://127.0.0.1:6555"
    board = _board(["a"])
    board.daemons[other] = DaemonView(other)
    board.apply(other, window_event("a", 0, 0.0, 3.0, 0.0, [1 / 11] * 11, CLASSES, [], 9.0, "m", True), 0.5)
    text = "\n".join(_text(board, 80, 24))
    assert "a @ 127.0.0.1:5555" in text and "a @ 127.0.0.1:6555" in text  # same stream name, two daemons


def test_a_silent_daemon_goes_stale():
    board = _board(["a"])
    assert "no answer" not in "\n".join(_text(board, 80, 24, now=1.0))
    assert "no answer for" in "\n".join(_text(board, 80, 24, now=STALE_S + 5))


# ---- in a real terminal --------------------------------------------------------------------------

class Tmux:
    """A private tmux server (its own socket) running one command in an 80x24 window."""

    def __init__(self, command: list[str], width: int = 80, height: int = 24):
        self.socket = f"instrumentd-test-{free_port()}"
        self.tmux(["new-session", "-d", "-s", "dash", "-x", str(width), "-y", str(height), " ".join(command)])

    def tmux(self, args: list[str]) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True).stdout

    def capture(self) -> str:
        return self.tmux(["capture-pane", "-p", "-t", "dash"])

    def capture_if(self, predicate) -> str | None:
        """The screen if ``predicate(screen)``, else None."""
        screen = self.capture()
        return screen if predicate(screen) else None

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def _bars(screen: str) -> dict[str, str]:
    """Instrument name -> its bar and value, from a captured screen."""
    out = {}
    for c in CLASSES:
        m = re.search(rf"[●\s]\s{re.escape(NAMES[c])}\s+([█▉▊▋▌▍▎▏ ]*)\s*(\d\.\d\d)", screen)
        if m:
            out[c] = m.group(1).strip() + m.group(2)
    return out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed (make system-deps)")
def test_dashboard_in_tmux_against_a_real_daemon(tmp_path, daemon, program, fitted):
    """Started before its daemon it waits; then it shows the daemon's streams with moving bars; q quits it."""
    pub, status_file = f"tcp://127.0.0.1:{free_port()}", tmp_path / "exit-code"
    command = [sys.executable, "-m", "instrumentd", "dashboard", "--connect", pub]
    term = Tmux(["sh", "-c", f"'{' '.join(command)}; echo $? > {status_file}'"])
    try:
        wait_for(lambda: "Waiting for daemon" in term.capture(), 60, "the waiting screen")
        daemon([f"duo=file:{program}"], "--hop", "0.5", "--checkpoint", str(fitted), pub=pub)
        first = wait_for(lambda: term.capture_if(lambda s: len(_bars(s)) == 11), 90, "all 11 bars")
        assert "duo" in first and "Flute" in first and "Violin" in first
        assert "Waiting for daemon" not in first
        lines = first.rstrip("\n").split("\n")
        assert len(lines) <= 24 and max(len(line) for line in lines) <= 80
        wait_for(lambda: _bars(term.capture()) != _bars(first), 30, "the bars to move")
        wait_for(lambda: "p50" in term.capture(), 30, "the stream's heartbeat")
        term.tmux(["send-keys", "-t", "dash", "q"])
        wait_for(lambda: status_file.exists() and status_file.read_text().strip(), 20, "the dashboard to exit")
        assert status_file.read_text().strip() == "0"
    finally:
        term.close()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed (make system-deps)")
def test_ctrl_c_quits_and_restores_the_terminal(tmp_path):
    status_file = tmp_path / "exit-code"
    command = [sys.executable, "-m", "instrumentd", "dashboard", "--connect", f"tcp://127.0.0.1:{free_port()}"]
    # the shell must outlive the Ctrl-C (a trap, which its child does not inherit) to report the exit code
    term = Tmux(["sh", "-c", f"'trap true INT; {' '.join(command)}; echo $? > {status_file}; stty -a; sleep 30'"])
    try:
        wait_for(lambda: "Waiting for daemon" in term.capture(), 60, "the waiting screen")
        term.tmux(["send-keys", "-t", "dash", "C-c"])
        wait_for(lambda: status_file.exists() and status_file.read_text().strip(), 20, "the dashboard to exit")
        assert status_file.read_text().strip() == "0"
        screen = wait_for(lambda: term.capture_if(lambda s: "icanon" in s), 10, "stty's report")
        assert "-icanon" not in screen and " echo" in screen  # cooked mode again: cbreak undone
        assert "Traceback" not in screen
    finally:
        term.close()


def test_time_axis_under_the_timeline():
    board = _board(["a"])
    for seq in range(11, 60):  # 1 s apart in stream time
        board.apply(ENDPOINT, window_event("a", seq, seq, seq + 3.0, 0.0, [1 / 11] * 11, CLASSES, [], 9.0, "m", True), 0.0)
    lines = _text(board, 80, 24)
    timeline = next(i for i, line in enumerate(lines) if "timeline" in line)
    axis = lines[timeline + 1]
    assert axis.rstrip(" │").endswith("now") and "╵-16s" in axis and "╵-32s" in axis
    assert axis.index("╵-16s") == axis.index("╵-32s") + 16  # one cell per window, labels 16 windows apart


def test_ended_and_failed_streams_say_so():
    board = _board(["a", "b"])
    board.apply(ENDPOINT, status_event(0.0, 9.0, "cpu", "m", True, 0, {
        "a": {**_stream_status(), "state": "ended"}, "b": {**_stream_status(), "state": "failed"}}), 0.0)
    text = "\n".join(_text(board, 160, 30))
    assert "a  ended" in text and "b  failed" in text
    assert "ENDED · last" in text and "FAILED · last" in text and "│ now" not in text


def test_source_lifecycle_events_set_the_state():
    board = _board(["a"])
    board.take(ENDPOINT, {"schema": 1, "type": "source", "stream": "a", "state": "ended",
                          "wall_time": "2026-01-05T10:00:00.000+00:00"})
    assert board.streams[ENDPOINT, "a"].state == "ended"  # over the heartbeat's "running"
    assert "ENDED · last" in "\n".join(_text(board, 80, 24))


def test_status_line_whole_at_120_columns_and_q_quits_once():
    board = _board(["a", "b"])
    board.daemons["tcp://127.0.0.1:6555"] = DaemonView("tcp://127.0.0.1:6555")
    board.apply("tcp://127.0.0.1:6555", status_event(0.0, 5.0, "cpu", "m", True, 0, {}), 0.0)
    for width in (80, 120, 200):
        text = "\n".join(_text(board, width, 30))
        assert "…" not in text  # nothing cut off
        assert text.count("queue 0.10 s") == 2 and text.count("-12 dB") == 2
        assert text.count("q quits") == 1


def test_replayed_events_fill_the_board_once(publishing):
    from instrumentd.clients.dashboard import backfill
    from instrumentd.clients.subscribe import Replayer

    for seq in range(30):
        publishing.window("radio", "vio" if seq % 2 else "flu", 0.8, labels=("vio",) if seq % 2 else (), send=False)
    publishing.segment("radio", "vio", "start", send=False)
    live = publishing.window("radio", "vio", 0.9, labels=("vio",), send=False)
    board = Board([publishing.pub])
    assert backfill(board, publishing.pub, live, Replayer([publishing.replay]))
    board.apply(publishing.pub, live, 0.0)
    board.apply(publishing.pub, live, 0.0)  # had already: not twice
    view = board.streams[publishing.pub, "radio"]
    assert len(view.history) == 31 and [e["seq"] for e in view.segments] == [30]
    assert board.daemons[publishing.pub].last_seen == 0.0
    nobody = Board([ENDPOINT])
    assert not backfill(nobody, ENDPOINT, live, Replayer([f"tcp://127.0.0.1:{free_port()}"], timeout_s=0.3))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed (make system-deps)")
def test_opens_filled_from_replay_and_shows_an_ended_stream_at_120_columns(tmp_path, publishing):
    for _ in range(40):  # logged before the dashboard opens, never seen by it live
        publishing.window("radio", "vio", 0.9, labels=("vio",), send=False)
    status_file = tmp_path / "exit-code"
    command = [sys.executable, "-m", "instrumentd", "dashboard", "--connect", publishing.pub,
               "--replay", publishing.replay]
    term = Tmux(["sh", "-c", f"'{' '.join(command)}; echo $? > {status_file}'"], width=120, height=30)
    try:
        wait_for(lambda: "Waiting for daemon" in term.capture(), 60, "the waiting screen")
        publishing.wait_subscribers()
        publishing.status({"radio": "running"})
        screen = wait_for(lambda: term.capture_if(lambda s: "timeline" in s), 30, "the stream's panel")
        timeline = next(line for line in screen.split("\n") if "timeline" in line)
        assert timeline.count("█") == 40  # the replayed windows, before any live one
        assert "╵-16s" in screen and "now" in screen and "Violin" in screen
        assert screen.count("q quits") == 1 and "-20 dB" in screen and "…" not in screen
        publishing.status({"radio": "ended"})
        wait_for(lambda: "ENDED · last Violin" in term.capture(), 20, "the stream shown as ended")
        assert "radio  ended" in term.capture()
        term.tmux(["send-keys", "-t", "dash", "q"])
        wait_for(lambda: status_file.exists() and status_file.read_text().strip(), 20, "the dashboard to exit")
        assert status_file.read_text().strip() == "0"
    finally:
        term.close()
