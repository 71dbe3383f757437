"""``instrumentd record``: store every event of one or more daemons in an SQLite file, gaps filled.

Tables (``PRAGMA user_version`` = :data:`DB_VERSION`):

* ``events(stream, seq, type, wall_time, start, end, instrument, body, via)``: one row per window or
  segment event, keyed by ``(stream, seq)``; ``start``/``end`` are ``t_start``/``t_end`` of a window or
  ``start``/``end`` of a segment (seconds of stream time), ``instrument`` is a window's ``top`` or a
  segment's instrument, ``body`` the event's JSON, ``via`` ``live`` or ``replay``.
* ``status(wall_time, body)``: every heartbeat.
* ``gaps(stream, from_seq, to_seq)``: seqs noticed missing and not (yet) fetched, half-open ranges.

A gap in a stream's seq is noticed when the next event arrives, and filled at once from the
replay endpoint that serves the stream; what cannot be fetched stays in ``gaps`` and is asked
for again every :data:`RETRY_S` seconds and at exit. A recorder restarted on the same file picks
up each stream where the file ends.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

DB_VERSION = 1
RETRY_S = 5.0  # seconds between attempts at the gaps still open
COMMIT_S = 0.5  # seconds between commits while events keep coming

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    stream TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, wall_time TEXT NOT NULL,
    start REAL, "end" REAL, instrument TEXT, body TEXT NOT NULL, via TEXT NOT NULL,
    PRIMARY KEY (stream, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS status (wall_time TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gaps (
    stream TEXT NOT NULL, from_seq INTEGER NOT NULL, to_seq INTEGER NOT NULL, PRIMARY KEY (stream, from_seq)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (wall_time);
"""


class Store:
    """The SQLite file. ``next_seq()`` says where each stream stands; ``add`` stores one event."""

    def __init__(self, path: str | Path):
        from instrumentd.pipeline.errors import InstrumentdError

        self.path = Path(path)
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level="DEFERRED")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and version != DB_VERSION:
                raise InstrumentdError(f"--db {path}: not an instrumentd event file (user_version {version}, "
                                       f"tables {sorted(tables)}); give a new file")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.executescript(_SCHEMA)
            self.db.execute(f"PRAGMA user_version = {DB_VERSION}")
            self.db.commit()
        except sqlite3.DatabaseError as exc:
            raise InstrumentdError(f"--db {path}: cannot use as SQLite ({exc})") from None
        self.added = {"live": 0, "replay": 0}

    def next_seq(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT stream, MAX(seq) + 1 FROM events GROUP BY stream"))

    def add(self, event: dict[str, Any], via: str) -> None:
        """Store a window, segment or source event (a duplicate ``(stream, seq)`` is ignored) or a status event;
        a source event has no start, end or instrument (NULL)."""
        body = json.dumps(event)
        if event["type"] == "status":
            self.db.execute("INSERT INTO status VALUES (?, ?)", (event["wall_time"], body))
            self.added[via] += 1
            return
        if event["type"] == "window":
            start, end, instrument = event["t_start"], event["t_end"], event["top"]
        elif event["type"] == "segment":
            start, end, instrument = event["start"], event["end"], event["instrument"]
        else:
            start, end, instrument = None, None, None
        cur = self.db.execute("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              (event["stream"], event["seq"], event["type"], event["wall_time"], start, end,
                               instrument, body, via))
        self.added[via] += cur.rowcount

    def note_gap(self, stream: str, from_seq: int, to_seq: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO gaps VALUES (?, ?, ?)", (stream, from_seq, to_seq))

    def open_gaps(self) -> list[tuple[str, int, int]]:
        return list(self.db.execute("SELECT stream, from_seq, to_seq FROM gaps ORDER BY stream, from_seq"))

    def recheck_gap(self, stream: str, from_seq: int, to_seq: int) -> None:
        """Replace the gap ``[from_seq, to_seq)`` by the runs of seqs still missing in it."""
        have = {r[0] for r in self.db.execute("SELECT seq FROM events WHERE stream = ? AND seq >= ? AND seq < ?",
                                              (stream, from_seq, to_seq))}
        self.db.execute("DELETE FROM gaps WHERE stream = ? AND from_seq = ?", (stream, from_seq))
        run_start = None
        for seq in range(from_seq, to_seq + 1):
            missing = seq < to_seq and seq not in have
            if missing and run_start is None:
                run_start = seq
            elif not missing and run_start is not None:
                self.note_gap(stream, run_start, seq)
                run_start = None

    def commit(self) -> None:
        self.db.commit()

    def close(self) -> None:
        self.db.commit()
        self.db.close()


class Recorder:
    """Receives events and stores them; fills gaps. ``run()`` until :attr:`should_exit` is set.

    Parameters
    ----------
    store : where events go
    sock : a SUB socket subscribed to what is wanted
    replayer : a :class:`instrumentd.clients.subscribe.Replayer`, or None (gaps are noted, not filled)
    streams : stream names to keep (empty: all)
    backfill : fetch a new stream's history from seq 0
    """

    def __init__(self, store: Store, sock: Any, replayer: Any, streams: set[str], backfill: bool = False):
        from .subscribe import Gaps

        self.store, self.sock, self.replayer, self.streams, self.backfill = store, sock, replayer, streams, backfill
        self.gaps = Gaps(store.next_seq())
        self.signals = None  # a daemon.signals.Signals whose flag ends run()

    @property
    def should_exit(self) -> bool:
        return self.signals is not None and self.signals.should_exit

    def run(self) -> None:
        from .subscribe import receive

        last_commit = last_retry = time.monotonic()
        while not self.should_exit:
            event = receive(self.sock, COMMIT_S, "record")
            if event is not None:
                self.take(event)
            now = time.monotonic()
            if event is None or now - last_commit >= COMMIT_S:
                self.store.commit()
                last_commit = now
            if now - last_retry >= RETRY_S:
                self.fill_gaps()
                last_retry = now

    def take(self, event: dict[str, Any]) -> None:
        """Store one live event, after the events of the gap it reveals."""
        if event["type"] != "status":
            if self.streams and event["stream"] not in self.streams:
                return  # a topic prefix also matches longer stream names
            first_sight = event["stream"] not in self.gaps.next_seq
            missed = self.gaps.seen(event)
            if missed == "old":
                return
            if first_sight and self.backfill and event["seq"] > 0:
                missed = (0, event["seq"])
            if missed:
                self.store.note_gap(event["stream"], *missed)
                self.fill(event["stream"], *missed)
        self.store.add(event, "live")

    def fill(self, stream: str, from_seq: int, to_seq: int) -> None:
        from .subscribe import fill

        if self.replayer is None:
            return
        for old in fill(self.replayer, stream, (from_seq, to_seq), "record"):
            self.store.add(old, "replay")
        self.store.recheck_gap(stream, from_seq, to_seq)

    def fill_gaps(self) -> None:
        for stream, from_seq, to_seq in self.store.open_gaps():
            self.fill(stream, from_seq, to_seq)
        self.store.commit()


def record(db: str | Path, endpoints: list[str], replay: list[str], streams: list[str] | None = None,
           backfill: bool = False) -> tuple[dict[str, int], int]:
    """Store the events of the daemons at ``endpoints`` (of ``streams``; None = all) in the SQLite file
    ``db`` until SIGINT or SIGTERM, gaps filled from the ``replay`` endpoints (none: only noted), a new
    stream's logged history first with ``backfill``. Returns the events added (``{"live", "replay"}``)
    and the seqs still missing."""
    from instrumentd.daemon.signals import Signals

    from .subscribe import SEQ_TOPICS, Replayer, sub_socket, topic_prefixes

    store = Store(db)
    if not replay:
        print("instrumentd record: no --replay endpoint: gaps are noted in the gaps table, not filled",
              file=sys.stderr)
    sock = sub_socket(endpoints, topic_prefixes([*SEQ_TOPICS, "status"], streams))
    recorder = Recorder(store, sock, Replayer(replay) if replay else None, set(streams or ()), backfill)
    try:
        with Signals() as recorder.signals:
            recorder.fill_gaps()
            recorder.run()
            recorder.fill_gaps()
        missing = sum(b - a for _, a, b in store.open_gaps())
    finally:
        sock.close(linger=0)
        store.close()
    return dict(store.added), missing
