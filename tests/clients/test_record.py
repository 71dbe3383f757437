"""The recorder (:mod:`instrumentd.clients.record`): its SQLite store, and no event lost to a cut or a restart."""

import json
import signal
import sqlite3
import subprocess
import sys

import pytest

from instrumentd.clients.record import Store
from instrumentd.daemon.events import segment_event, status_event, window_event
from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.errors import InstrumentdError

from ..conftest import free_port
from .conftest import wait_for


def _window(seq, stream="a"):
    return window_event(stream, seq, seq * 0.5, seq * 0.5 + 3, 0.0, [1 / 11] * 11, CLASSES, [], 5.0, "m", False)


def test_store_keys_duplicates_and_gaps(tmp_path):
    store = Store(tmp_path / "ev.sqlite")
    for seq in (0, 1, 2, 5, 7):
        store.add(_window(seq), "live")
    store.add(_window(1), "replay")  # had it already
    store.add(segment_event("a", 8, "pia", "start", 3.0, None, None, 0.0, "m"), "live")
    store.add(_window(0, stream="b"), "live")
    store.add(status_event(0.0, 1.0, "cpu", "m", False, 0, {}), "live")
    assert store.added == {"live": 8, "replay": 0}
    assert store.next_seq() == {"a": 9, "b": 1}
    store.note_gap("a", 3, 8)
    store.recheck_gap("a", 3, 8)  # 5 and 7 are there: 3-4 and 6 are not
    assert store.open_gaps() == [("a", 3, 5), ("a", 6, 7)]
    store.close()
    db = sqlite3.connect(tmp_path / "ev.sqlite")
    assert db.execute("SELECT type, start, \"end\", instrument FROM events WHERE seq = 8").fetchone() == \
        ("segment", 3.0, None, "pia")
    assert db.execute("SELECT COUNT(*) FROM status").fetchone() == (1,)
    body = json.loads(db.execute("SELECT body FROM events WHERE stream = 'b'").fetchone()[0])
    assert body == _window(0, stream="b")
    assert Store(tmp_path / "ev.sqlite").next_seq() == {"a": 9, "b": 1}  # picks up where the file ends


def test_store_refuses_other_files(tmp_path):
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE people (name TEXT)").connection.commit()
    with pytest.raises(InstrumentdError, match="not an instrumentd event file"):
        Store(other)


class Proxy:
    """A ZeroMQ forwarder (XSUB -> XPUB) in its own process: killing it cuts every subscriber behind it off."""

    CODE = ("import sys, zmq\nc = zmq.Context()\nx = c.socket(zmq.XSUB); x.connect(sys.argv[1])\n"
            "p = c.socket(zmq.XPUB); p.bind(sys.argv[2])\nzmq.proxy(x, p)\n")

    def __init__(self, upstream: str):
        self.upstream, self.endpoint = upstream, f"tcp://127.0.0.1:{free_port()}"
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([sys.executable, "-c", self.CODE, self.upstream, self.endpoint])

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def _recorded(db_path):
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute("SELECT stream, seq, body, via FROM events")
        return {(s, q): (json.loads(b), via) for s, q, b, via in rows}
    except sqlite3.OperationalError:  # not created yet
        return {}
    finally:
        db.close()


def _record(db, *args):
    return subprocess.Popen([sys.executable, "-m", "instrumentd", "record", "--db", str(db), *args],
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_record_cut_off_and_daemon_restart_lose_nothing(tmp_path, daemon, program):
    daemon = daemon([f"a=file:{program}"], "--hop", "0.25")  # a window every 0.25 s: the waits below count events
    daemon.wait_ready()
    proxy = Proxy(daemon.pub)
    db = tmp_path / "events.sqlite"
    recorder = _record(db, "--connect", proxy.endpoint, "--replay", daemon.replay)
    try:
        wait_for(lambda: len(_recorded(db)) >= 3, 60, "the first events in the file")

        # 1. the recorder's connection is cut while the daemon goes on publishing
        proxy.kill()
        cut_at = max(daemon.logged("a"), key=lambda e: e["seq"])["seq"]
        wait_for(lambda: daemon.logged("a")[-1]["seq"] >= cut_at + 4, 60, "events published while cut off")
        proxy.start()
        wait_for(lambda: max(q for _, q in _recorded(db)) >= cut_at + 8, 60, "events after the reconnect")
        replayed = [e for e, via in _recorded(db).values() if via == "replay"]
        assert len(replayed) >= 3, "the gap was filled from the replay endpoint"

        # 2. the daemon is killed outright and started again: seq goes on, the recorder reconnects by itself
        daemon.kill()
        before = max(q for _, q in _recorded(db))
        daemon.start()
        wait_for(lambda: max(q for _, q in _recorded(db)) >= before + 4, 90, "events from the restarted daemon")
    finally:
        recorder.send_signal(signal.SIGINT)
        proxy.kill()
    assert recorder.wait(30) == 0, recorder.stderr.read()
    assert "Traceback" not in recorder.stderr.read()

    got = _recorded(db)
    # the daemon's first events (its sources' "starting" and "running") go out before this recorder joins
    first, last = min(q for _, q in got), max(q for _, q in got)
    logged = {e["seq"]: e for e in daemon.logged("a") if first <= e["seq"] <= last}
    assert sorted(q for _, q in got) == list(range(first, last + 1)) == sorted(logged), "no seq is missing"
    assert all(got[("a", q)][0] == logged[q] for q in logged), "stored events are the daemon's, byte for byte"
    db_conn = sqlite3.connect(db)
    assert db_conn.execute("SELECT COUNT(*) FROM gaps").fetchone() == (0,)
    assert db_conn.execute("SELECT COUNT(*) FROM status").fetchone()[0] >= 1

    # a new recorder with --backfill fetches the history before its first live event
    fresh = tmp_path / "fresh.sqlite"
    late = _record(fresh, "--connect", daemon.pub, "--replay", daemon.replay, "--backfill")
    try:
        wait_for(lambda: len(_recorded(fresh)) > last, 60, "the backfilled history")
    finally:
        late.send_signal(signal.SIGINT)
    assert late.wait(30) == 0
    backfilled = _recorded(fresh)
    assert sorted(q for _, q in backfilled)[: last + 1] == list(range(last + 1))
    assert all(backfilled[("a", q)][0] == logged[q] for q in logged)
