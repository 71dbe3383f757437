"""Replay: a ROUTER endpoint that serves logged events, and the client function to ask it.

Request (a REQ or DEALER socket, one JSON frame):
``{"stream": "studio", "from_seq": 120}`` (optional ``"limit"``, at most 1000), or ``{}`` for the list of streams.
Answer: ``{"schema": 1, "stream": ..., "events": [...], "next_seq": N, "last_seq": L}`` where
``next_seq`` is where to ask next (``> last_seq`` means up to date); ``{"schema": 1, "streams":
{name: last_seq}}`` for the list; ``{"schema": 1, "error": "..."}`` for a bad request.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterator

import zmq

from .eventlog import MAX_REPLAY, EventLog
from .events import SCHEMA, EventError
from .publisher import bind

log = logging.getLogger("instrumentd.daemon.replay")


class ReplayServer:
    """Answers replay requests from ``log`` on ``endpoint``; :meth:`serve_pending` never blocks."""

    def __init__(self, endpoint: str, log_: EventLog, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.log = log_
        self.socket = (context or zmq.Context.instance()).socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        bind(self.socket, endpoint, "replay")

    def serve_pending(self) -> int:
        """Answer every request waiting; returns how many."""
        n = 0
        while True:
            try:
                frames = self.socket.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return n
            envelope, body = frames[:-1], frames[-1]
            answer = self.answer(body)
            try:
                self.socket.send_multipart([*envelope, json.dumps(answer).encode()], flags=zmq.NOBLOCK)
            except zmq.Again:
                log.warning("replay client gone before its answer was sent")
            n += 1

    def answer(self, body: bytes) -> dict[str, Any]:
        """One request body -> the answer object."""
        try:
            req = json.loads(body)
            if not isinstance(req, dict):
                raise ValueError("request must be a JSON object")
            if "stream" not in req:
                return {"schema": SCHEMA, "streams": self.log.streams()}
            stream, from_seq = req["stream"], req.get("from_seq", 0)
            limit = req.get("limit", MAX_REPLAY)
            for name, v in (("from_seq", from_seq), ("limit", limit)):
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
            events = self.log.read(stream, from_seq, min(limit, MAX_REPLAY))
            last = self.log.last_seq(stream)
            next_seq = events[-1]["seq"] + 1 if events else max(from_seq, last + 1)
            return {"schema": SCHEMA, "stream": stream, "events": events, "next_seq": next_seq, "last_seq": last}
        except (ValueError, EventError, KeyError) as exc:
            return {"schema": SCHEMA, "error": str(exc)}

    def close(self) -> None:
        self.socket.close()


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
