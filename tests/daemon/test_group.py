"""``serve --processes K``: sources dealt over K children, events and replay joined on the group's endpoints,
a killed child started again, the whole group stopped by one signal. Real processes."""

import os
import signal

import pytest

from instrumentd.daemon.config import load_config
from instrumentd.daemon.group import child_configs
from instrumentd.daemon.replay import replay
from instrumentd.pipeline.errors import ParameterError

from ..conftest import devices, read_log
from .conftest import windows_of


def test_a_group_needs_a_source_per_process(tmp_path):
    cfg = load_config(env={}, sources=["a=mic", "b=mic", "c=mic"], processes=2, log_dir=str(tmp_path))
    children = child_configs(cfg, tmp_path)
    assert [names for _, names in children] == [["a", "c"], ["b"]]
    assert [c.pub for c, _ in children] == [f"ipc://{tmp_path}/pub-0", f"ipc://{tmp_path}/pub-1"]
    assert all(c.replay == "" and c.processes == 1 and c.log_dir == str(tmp_path) for c, _ in children)
    with pytest.raises(ParameterError, match="processes = 4 but only 3 source"):
        child_configs(load_config(env={}, sources=cfg.sources, processes=4), tmp_path)


@pytest.mark.slow
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


@pytest.mark.slow
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
