"""The daemon as a real subprocess: files, stdin pipes, ffmpeg children, JACK, signals, kill and replay."""

import os
import shutil
import signal
import subprocess
import time

import pytest

from instrumentd.daemon.replay import replay

from ..conftest import devices, start_jackd
from .conftest import melody, read_log, windows_of

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("device", devices())
def test_file_fast_publishes_every_window_logs_it_and_exits_0(daemon, subscriber, wav, device):
    clip = wav(4.2)
    d = daemon([f"take1=file+fast:{clip}"], "--hop", "0.5", device=device)
    sub = subscriber(d.pub)
    assert d.wait() == 0, d.log_text()
    logged = read_log(d.log_dir, "take1")
    wins = windows_of(logged)
    assert [w["t_end"] for w in wins] == [3.0, 3.51, 3.99]  # ends on the 30 ms frame grid, 0.5 s apart on average
    assert [e["seq"] for e in logged] == list(range(len(logged)))
    for w in wins:
        assert w["t_end"] - w["t_start"] == pytest.approx(3.0)
        assert sum(w["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert w["model"].startswith("cross-") and w["latency_ms"] >= 0
        assert w["level_db"] == pytest.approx(-11.0, abs=1.0)  # the 0.4-amplitude melody: RMS 0.28
    # the daemon takes seconds to load its model, so the subscriber is connected before the first event
    got = sub.events(lambda ev: len([e for e in ev if "seq" in e]) == len(logged) and ev[-1]["type"] == "status",
                     timeout=10)
    assert [e for e in got if "seq" in e] == logged
    assert got[-1]["streams"]["take1"]["windows"] == len(wins) and got[-1]["streams"]["take1"]["state"] == "ended"


def test_stdin_pcm_is_resampled_and_ends_with_the_pipe(daemon, tmp_path):
    pcm = (melody(4.2, sr=48000, channels=2) * 32767).astype("<i2").tobytes()
    d = daemon(["in=stdin:s16le:48000:2"], "--hop", "1.0", stdin=subprocess.PIPE)
    for i in range(0, len(pcm), 19_200):  # 0.1 s writes, as a live producer would
        d.proc.stdin.write(pcm[i : i + 19_200])
    d.proc.stdin.close()
    assert d.wait() == 0, d.log_text()
    wins = windows_of(read_log(d.log_dir, "in"))
    assert [w["t_start"] for w in wins] == [0.0, 0.99]
    assert "stream in: in=stdin:s16le:48000:2" in d.log_text()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_child_decodes_and_a_dying_one_is_restarted_with_backoff(daemon, subscriber, wav):
    clip = wav(3.3, sr=22050, channels=2)
    d = daemon([f"good=ffmpeg:{clip}", f"bad=ffmpeg:{clip.parent / 'missing.wav'}"], "--hop", "0.5")
    sub = subscriber(d.pub, ("status",))
    status = sub.events(lambda ev: ev and ev[-1]["streams"]["bad"]["restarts"] >= 3
                        and ev[-1]["streams"]["good"]["windows"] >= 2, timeout=60)[-1]
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait() == 0
    text = d.log_text()
    waits = [float(line.rsplit("restarting in ", 1)[1].split()[0]) for line in text.splitlines()
             if "source bad: ffmpeg exited" in line]
    assert waits[:3] == [0.5, 1.0, 2.0], text
    assert "missing.wav" in text  # ffmpeg's own last words are logged
    assert status["streams"]["good"]["restarts"] >= 1  # the file ended, ffmpeg exited, it was restarted
    good = windows_of(read_log(d.log_dir, "good"))
    # one 3 s window per 3.3 s pass; after the restart the grid starts over where the stream resumed
    assert good[0]["t_start"] == 0.0 and good[1]["t_start"] == pytest.approx(3.3, abs=0.031)


def test_sigterm_publishes_the_last_windows_and_exits_0(daemon, subscriber, wav):
    clip = wav(20.0)
    d = daemon([f"live=file:{clip}"], "--hop", "0.5")
    sub = subscriber(d.pub)
    got = sub.events(lambda ev: len(windows_of(ev)) >= 2, timeout=60)
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait(30) == 0, d.log_text()
    got += sub.drain()  # the daemon has exited: what it sent is queued here
    logged = read_log(d.log_dir, "live")
    assert logged, d.log_text()
    published = [e for e in got if e.get("stream") == "live"]
    assert published[-1] == logged[-1]  # the last logged event went out before exit
    assert [e["seq"] for e in logged] == list(range(len(logged)))
    assert "stopped" in d.log_text()
    assert len(windows_of(logged)) < 30  # it stopped early: a signal, not the end of the file


def test_killed_daemon_restarts_with_seq_continuing_and_the_subscriber_replays_its_gap(daemon, subscriber, wav):
    clip = wav(30.0)
    d1 = daemon([f"radio=file:{clip}"], "--hop", "0.25")
    sub = subscriber(d1.pub, ("window.radio", "segment.radio"))
    first = sub.events(lambda ev: len(ev) >= 2, timeout=60)
    sub.close()  # the subscriber goes away for a while; the daemon keeps publishing
    time.sleep(1.0)
    os.kill(d1.proc.pid, signal.SIGKILL)
    d1.proc.wait()
    before = read_log(d1.log_dir, "radio")
    assert len(before) > len(first)
    d2 = daemon([f"radio=file:{clip}"], "--hop", "0.25", log_dir=d1.log_dir)
    sub2 = subscriber(d2.pub, ("window.radio", "segment.radio"))
    later = sub2.events(lambda ev: len(ev) >= 1, timeout=60)
    assert later[0]["seq"] >= len(before)  # seq continued across the restart
    # the subscriber fills what it missed from the replay endpoint
    have = first[-1]["seq"]
    filled = [e for e in replay(d2.replay, "radio", have + 1) if e["seq"] < later[0]["seq"]]
    everything = first + filled + later
    assert [e["seq"] for e in everything] == list(range(everything[-1]["seq"] + 1))
    assert everything[: len(before)] == before
    d2.proc.send_signal(signal.SIGTERM)
    assert d2.wait(30) == 0


@pytest.mark.parametrize("device", devices())
def test_group_of_daemons_publishes_and_replays_every_stream_on_one_endpoint(daemon, subscriber, wav, device):
    a, b = wav(4.2, name="a.wav"), wav(4.8, name="b.wav")
    d = daemon([f"a=file+fast:{a}", f"b=file+fast:{b}", f"c=file+fast:{a}"], "--hop", "0.5", "--processes", "2",
               device=device)
    sub = subscriber(d.pub)
    assert d.wait() == 0, d.log_text()
    text = d.log_text()
    assert "daemon 0 (pid" in text and "daemon 1 (pid" in text and text.count("serving ") == 2
    logged = {s: read_log(d.log_dir, s) for s in "abc"}
    for s, events in logged.items():
        assert [e["seq"] for e in events] == list(range(len(events))) and windows_of(events), s
    got = sub.events(lambda ev: sum(1 for e in ev if "seq" in e) == sum(map(len, logged.values())), timeout=10)
    for s in "abc":
        assert [e for e in got if e.get("stream") == s] == logged[s]  # every event of both daemons came out here
    assert "group stopped" in text


def test_group_restarts_a_killed_daemon_and_stops_on_sigterm(daemon, subscriber, wav):
    clip = wav(30.0)
    d = daemon([f"a=file:{clip}", f"b=file:{clip}"], "--hop", "0.5", "--processes", "2")
    sub = subscriber(d.pub, ("window.",))
    sub.events(lambda ev: {e["stream"] for e in ev} == {"a", "b"}, timeout=60)
    pid = int(d.log_text().split("daemon 0 (pid ")[1].split(")")[0])
    os.kill(pid, signal.SIGKILL)
    before = len(read_log(d.log_dir, "a"))
    later = sub.events(lambda ev: any(e["stream"] == "a" and e["seq"] >= before for e in ev), timeout=60)
    assert "daemon 0 (a) exited with -9; starting it again in 1 s" in d.log_text()
    assert any(e["stream"] == "b" for e in later)  # the other daemon went on
    logged = read_log(d.log_dir, "a")
    assert list(replay(d.replay, "a", 0))[: len(logged)] == logged  # the group's replay endpoint reads the log
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait(60) == 0, d.log_text()
    for s in "ab":
        events = read_log(d.log_dir, s)
        assert [e["seq"] for e in events] == list(range(len(events))), s  # gapless across the restart
    assert "group stopped" in d.log_text()


@pytest.fixture
def jack_server():
    """A JACK server with the dummy driver (no sound hardware), private to this test."""
    name = f"instrumentd-test-{os.getpid()}"
    proc = start_jackd(name)
    yield name
    proc.terminate()
    proc.wait(10)


def test_mic_through_portaudio_and_jack(daemon, subscriber, jack_server, monkeypatch):
    monkeypatch.setenv("JACK_DEFAULT_SERVER", jack_server)
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    d = daemon(["studio=mic"], "--hop", "0.5")
    sub = subscriber(d.pub)
    t0 = time.monotonic()
    got = sub.events(lambda ev: len(windows_of(ev)) >= 2 and any(e["type"] == "status" for e in ev), timeout=60)
    wins = windows_of(got)
    assert wins[1]["t_end"] - wins[0]["t_end"] == pytest.approx(0.5, abs=0.02)
    assert time.monotonic() - t0 >= 3.0  # live: a 3 s window needs 3 s of wall time
    status = [e for e in got if e["type"] == "status"][-1]["streams"]["studio"]
    assert status["state"] == "running" and status["level_db"] == -120.0  # the dummy driver records silence
    d.proc.send_signal(signal.SIGINT)
    assert d.wait(30) == 0
    assert "JACK" in d.log_text() or "studio=mic" in d.log_text()
