"""Replay: a ROUTER endpoint that serves logged events, and the client function to ask it.

Request (a REQ or DEALER socket, one JSON frame):
``{"stream": "studio", "from_seq": 120}`` (optional ``"limit"``, at most 1000), or ``{}`` for the list of streams.
Answer: ``{"schema": 1, "stream": ..., "events": [...], "next_seq": N, "last_seq": L}`` where
``next_seq`` is where to ask next (``> last_seq`` means up to date); ``{"schema": 1, "streams":
{name: last_seq}}`` for the list; ``{"schema": 1, "error": "..."}`` for a bad request.

A request over :data:`MAX_REQUEST_BYTES` or nested deeper than :data:`MAX_REQUEST_DEPTH` is
refused before it is parsed. :meth:`ReplayServer.start` answers on a thread of its own (the socket
is used by that thread alone), so a burst of requests never delays publishing; answers come from
a :class:`~instrumentd.daemon.eventlog.LogIndex`, which seeks instead of re-reading a log.

Clients: :func:`replay` pages through one stream, :func:`list_streams` asks for the list, and
:func:`merge_streams` decides which of several daemons owns a stream (the one with the newer log),
for the subscribers' replayer and the proxy's router alike.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Iterator

import zmq

from .eventlog import MAX_REPLAY, EventLog, LogIndex
from .events import SCHEMA, EventError
from .publisher import bind

log = logging.getLogger("instrumentd.daemon.replay")

MAX_REQUEST_BYTES = 4096  # a request is a small flat object
MAX_REQUEST_DEPTH = 4  # brackets open at once
POLL_MS = 100  # the replay thread checks for its stop flag this often
REPLAY_TIMEOUT_S = 3.0  # how long a client waits for a replay endpoint's answer


class ReplayServer:
    """Answers replay requests from the log folder of ``log_`` on ``endpoint``.

    Either :meth:`start` a thread that answers until :meth:`close`, or call :meth:`serve_pending`
    (never blocks) from the thread that made the server.
    """

    def __init__(self, endpoint: str, log_: EventLog | str | Path, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.index = LogIndex(log_.folder if isinstance(log_, EventLog) else log_)
        self.socket = (context or zmq.Context.instance()).socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        bind(self.socket, endpoint, "replay")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Answer on a thread of its own from now on; the socket belongs to that thread."""
        self._thread = threading.Thread(target=self._serve, name="replay", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if self.socket.poll(POLL_MS):
                self.serve_pending()
        self.serve_pending()

    def serve_pending(self) -> int:
        """Answer every request waiting; returns how many."""
        n = 0
        while True:
            try:
                frames = self.socket.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return n
            envelope, body = frames[:-1], frames[-1]
            try:
                answer = self.answer(body)
            except Exception:  # the request's fault or ours, the daemon must go on: logged with its traceback
                log.exception("replay request of %d bytes could not be answered", len(body))
                answer = {"schema": SCHEMA, "error": "internal error answering this request (logged by the daemon)"}
            try:
                self.socket.send_multipart([*envelope, json.dumps(answer).encode()], flags=zmq.NOBLOCK)
            except zmq.Again:
                log.warning("replay client gone before its answer was sent")
            n += 1

    def answer(self, body: bytes) -> dict[str, Any]:
        """One request body -> the answer object."""
        try:
            _check_size(body)
            req = json.loads(body)
            if not isinstance(req, dict):
                raise ValueError("request must be a JSON object")
            if "stream" not in req:
                return {"schema": SCHEMA, "streams": self.index.streams()}
            stream, from_seq = req["stream"], req.get("from_seq", 0)
            if not isinstance(stream, str):
                raise ValueError(f"stream must be a name, got {stream!r}"[:200])
            limit = req.get("limit", MAX_REPLAY)
            for name, v, least, what in (("from_seq", from_seq, 0, "non-negative"), ("limit", limit, 1, "positive")):
                if not isinstance(v, int) or isinstance(v, bool) or v < least:
                    raise ValueError(f"{name} must be a {what} integer, got {v!r}"[:200])
            events = self.index.read(stream, from_seq, min(limit, MAX_REPLAY))
            last = self.index.last_seq(stream)
            next_seq = events[-1]["seq"] + 1 if events else max(from_seq, last + 1)
            return {"schema": SCHEMA, "stream": stream, "events": events, "next_seq": next_seq, "last_seq": last}
        except (ValueError, EventError, KeyError) as exc:
            return {"schema": SCHEMA, "error": str(exc)}

    def close(self) -> None:
        """Stop the thread (after it answers what is waiting) and close the socket."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self.socket.close()


def _check_size(body: bytes) -> None:
    """Raise ValueError for a body too long or too deeply nested to be a request, without parsing it."""
    if len(body) > MAX_REQUEST_BYTES:
        raise ValueError(f"request of {len(body)} bytes; a request is at most {MAX_REQUEST_BYTES}")
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_REQUEST_DEPTH:
                raise ValueError(f"request nested more than {MAX_REQUEST_DEPTH} deep; a request is a flat object")
        elif byte in (0x5D, 0x7D):
            depth -= 1


def replay(endpoint: str, stream: str, from_seq: int = 0, timeout: float = 5.0,
           context: zmq.Context | None = None) -> Iterator[dict[str, Any]]:
    """Every logged event of ``stream`` from ``from_seq`` on, fetched in pages from ``endpoint``.

    Raises EventError when the daemon answers with an error, TimeoutError when it does not answer.
    """
    sock = (context or zmq.Context.instance()).socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    sock.connect(endpoint)
    try:
        while True:
            sock.send(json.dumps({"stream": stream, "from_seq": from_seq}).encode())
            try:
                answer = json.loads(sock.recv())
            except zmq.Again:
                raise TimeoutError(f"no answer from replay endpoint {endpoint} within {timeout} s") from None
            if "error" in answer:
                raise EventError(f"replay: {answer['error']}")
            yield from answer["events"]
            if not answer["events"] or answer["next_seq"] > answer["last_seq"]:
                return
            from_seq = answer["next_seq"]
    finally:
        sock.close()


def list_streams(endpoint: str, timeout: float = REPLAY_TIMEOUT_S,
                 context: zmq.Context | None = None) -> dict[str, int]:
    """The streams ``endpoint`` has logged: name -> last seq.

    Raises TimeoutError when it does not answer within ``timeout`` seconds, EventError when the answer
    is not a stream list.
    """
    sock = (context or zmq.Context.instance()).socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    sock.connect(endpoint)
    try:
        sock.send(b"{}")
        try:
            answer = json.loads(sock.recv())
        except zmq.Again:
            raise TimeoutError(f"no answer from replay endpoint {endpoint} within {timeout} s") from None
        except ValueError:
            raise EventError(f"replay endpoint {endpoint}: the answer is not JSON") from None
    finally:
        sock.close()
    streams = answer.get("streams") if isinstance(answer, dict) else None
    if not isinstance(streams, dict):
        raise EventError(f"replay endpoint {endpoint}: no stream list in its answer")
    return streams


def merge_streams(streams: dict[str, int], owners: dict[str, str], listed: Any, endpoint: str) -> None:
    """Fold the stream list ``listed`` (name -> last seq) that ``endpoint`` gave into ``streams`` (name ->
    last seq) and ``owners`` (name -> endpoint), in place: where two daemons list a stream, the newer log
    (the higher last seq) owns it. Entries that are not ``name: integer`` are passed over."""
    for name, last in listed.items() if isinstance(listed, dict) else ():
        if not isinstance(name, str) or not isinstance(last, int) or isinstance(last, bool):
            continue
        if name in streams and last <= streams[name]:
            continue
        if name in owners and owners[name] != endpoint:
            log.warning("stream %s is served by %s and %s; the newer log wins", name, owners[name], endpoint)
        streams[name], owners[name] = last, endpoint
