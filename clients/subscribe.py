"""What every subscriber shares: SUB sockets on one or more daemons, decoded events, seq gaps
noticed per stream and filled from the daemons' replay endpoints.

ZeroMQ reconnects a SUB socket by itself when its daemon goes away and comes back; nothing here
has to. A gap in a stream's ``seq`` (a subscriber that was cut off, a message the publisher had to
drop) is filled by asking the replay endpoint that serves the stream (docs/events.md).
"""

from __future__ import annotations

import sys
from typing import Any, Iterator

from instrumentd.daemon.config import Config
from instrumentd.daemon.replay import REPLAY_TIMEOUT_S

DEFAULT_CONNECT = Config.pub  # the daemon's default PUB endpoint
DEFAULT_REPLAY = Config.replay  # and its default replay endpoint
TOPICS = ("window", "segment", "source", "status")
SEQ_TOPICS = ("window", "segment", "source")  # the kinds that share a stream's seq
RECONNECT_MS = 250  # first retry after a lost connection; doubles up to RECONNECT_MAX_MS
RECONNECT_MAX_MS = 2000
HEARTBEAT_MS = 1000  # ZMTP heartbeats: a silent dead peer is noticed within a few of these


def check_endpoint(endpoint: str, flag: str) -> str:
    from instrumentd.pipeline.errors import ParameterError

    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme not in ("tcp", "ipc", "inproc") or not rest:
        raise ParameterError(f"{flag} {endpoint!r} is not tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    return endpoint


def sub_socket(endpoints: list[str], prefixes: list[str], context: Any = None) -> Any:
    """A SUB socket connected to every endpoint and subscribed to each topic prefix."""
    import zmq

    sock = (context or zmq.Context.instance()).socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_MAX_MS)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * HEARTBEAT_MS)
    for prefix in prefixes:
        sock.setsockopt_string(zmq.SUBSCRIBE, prefix)
    for endpoint in endpoints:
        sock.connect(endpoint)
    return sock


def topic_prefixes(topics: list[str], streams: list[str] | None) -> list[str]:
    """ZeroMQ prefixes for ``topics`` (``window``, ``segment``, ``source``, ``status``), narrowed to ``streams`` if given."""
    out = []
    for t in topics:
        if t == "status":
            out.append("status")
        else:
            out += [f"{t}.{s}" for s in streams] if streams else [f"{t}."]
    return out


def receive(sock: Any, timeout_s: float, command: str) -> dict[str, Any] | None:
    """The next valid event, or None after ``timeout_s`` seconds without one; a bad message is
    reported on stderr and skipped."""
    import zmq

    from instrumentd.daemon.events import EventError, decode

    if not sock.poll(int(timeout_s * 1000)):
        return None
    frames = sock.recv_multipart(zmq.NOBLOCK)
    try:
        if len(frames) != 2:
            raise EventError(f"expected [topic, body], got {len(frames)} frames")
        return decode(frames[1])
    except EventError as exc:
        print(f"instrumentd {command}: skipping a bad event on {frames[0][:80]!r}: {exc}", file=sys.stderr)
        return None


class Gaps:
    """Per-stream ``seq`` bookkeeping: which events are new, and which were missed.

    ``seen(event)`` returns ``(missed_from, missed_to)`` (a half-open range of seqs that never
    arrived before this one), ``None`` for a new event right after the last, or ``"old"`` for one
    already had (a duplicate, or one that came in through replay first).
    """

    def __init__(self, next_seq: dict[str, int] | None = None):
        self.next_seq: dict[str, int] = dict(next_seq or {})

    def seen(self, event: dict[str, Any]) -> tuple[int, int] | str | None:
        stream, seq = event["stream"], event["seq"]
        expected = self.next_seq.get(stream)
        if expected is not None and seq < expected:
            return "old"
        self.next_seq[stream] = seq + 1
        return (expected, seq) if expected is not None and seq > expected else None


class Replayer:
    """Fetches logged events from whichever of ``endpoints`` serves a stream.

    Parameters
    ----------
    endpoints : replay endpoints of the daemons (``tcp://127.0.0.1:5556`` by default there)
    timeout_s : how long one endpoint may take to answer
    """

    def __init__(self, endpoints: list[str], timeout_s: float = REPLAY_TIMEOUT_S):
        self.endpoints = endpoints
        self.timeout_s = timeout_s
        self._owner: dict[str, str] = {}  # stream -> endpoint that listed it

    def fetch(self, stream: str, from_seq: int, to_seq: int) -> list[dict[str, Any]]:
        """Events of ``stream`` with ``from_seq <= seq < to_seq`` in seq order, as many as any daemon logged.

        Raises
        ------
        TimeoutError
            No endpoint that serves ``stream`` answered.
        """
        from instrumentd.daemon.replay import replay

        if stream not in self._owner:
            self._find_owners()
        endpoint = self._owner.get(stream)
        if endpoint is None:
            asked = ", ".join(self.endpoints) or "none given"
            raise TimeoutError(f"no replay endpoint ({asked}) serves stream {stream!r}")
        out = []
        for event in replay(endpoint, stream, from_seq, self.timeout_s):
            if event["seq"] >= to_seq:
                break
            out.append(event)
        return out

    def _find_owners(self) -> None:
        from instrumentd.daemon.events import EventError
        from instrumentd.daemon.replay import list_streams, merge_streams

        streams: dict[str, int] = {}
        for endpoint in self.endpoints:
            try:
                merge_streams(streams, self._owner, list_streams(endpoint, self.timeout_s), endpoint)
            except (TimeoutError, EventError):
                continue


def fill(replayer: Replayer | None, stream: str, missed: tuple[int, int], command: str) -> Iterator[dict[str, Any]]:
    """The events of a gap from the replay endpoints; a gap that cannot be filled is reported on stderr."""
    if replayer is None:
        print(f"instrumentd {command}: stream {stream}: missed seq {missed[0]}-{missed[1] - 1} "
              "(no --replay endpoint to fill it from)", file=sys.stderr)
        return
    from instrumentd.daemon.events import EventError

    try:
        yield from replayer.fetch(stream, *missed)
    except (TimeoutError, EventError) as exc:
        print(f"instrumentd {command}: stream {stream}: missed seq {missed[0]}-{missed[1] - 1}: {exc}", file=sys.stderr)


class Feed:
    """The events of one or more daemons, each stream's in seq order: a SUB socket whose gaps are
    noticed and, given a replayer, filled before the event that revealed them.

    Parameters
    ----------
    endpoints : the daemons' PUB endpoints
    topics : event kinds among :data:`TOPICS`
    streams : only these streams (None or empty: all)
    replayer : fills gaps from the daemons' replay endpoints; None reports each gap on stderr
    command : the command named in messages
    """

    def __init__(self, endpoints: list[str], topics: list[str], streams: list[str] | None,
                 replayer: Replayer | None, command: str):
        # every kind that shares a stream's seq is received, so that one not asked for is no false gap
        received = [*topics, *(t for t in SEQ_TOPICS if t not in topics)] if set(topics) & set(SEQ_TOPICS) else topics
        self.sock = sub_socket(endpoints, topic_prefixes(received, streams))
        self.topics = set(topics)
        self.streams = set(streams or ())
        self.replayer = replayer
        self.command = command
        self.gaps = Gaps()

    def next(self, timeout_s: float) -> list[dict[str, Any]]:
        """The next live event, after the replayed events of the gap it reveals; [] after
        ``timeout_s`` seconds without one (or for a duplicate)."""
        event = receive(self.sock, timeout_s, self.command)
        if event is None or event["type"] == "status":
            return [] if event is None else [event]
        if self.streams and event["stream"] not in self.streams:
            return []  # a topic prefix also matches longer stream names
        if "seq" not in event:
            return [event]
        missed = self.gaps.seen(event)
        if missed == "old":
            return []
        out = [*fill(self.replayer, event["stream"], missed, self.command), event] if missed else [event]
        return [e for e in out if e["type"] in self.topics]

    def close(self) -> None:
        self.sock.close(linger=0)
