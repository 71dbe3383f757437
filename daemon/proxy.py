"""Many daemons, one feed: the event proxy and the replay router behind ``instrumentd proxy`` and
``instrumentd serve --processes K``.

Events go through ZeroMQ's own XSUB/XPUB proxy (``zmq.proxy_steerable``, in a thread): an XSUB
socket connected to every daemon's PUB endpoint and an XPUB socket bound on the frontend.
Subscriptions travel upstream through it, so each daemon sends only what some subscriber asked
for. The proxy adds no copy of its own and keeps no state: a subscriber that misses events fills
the gap from the replay frontend, as it would from one daemon.

Replay speaks the daemons' own protocol (docs/events.md). ``{}`` is sent to every backend and the
answer lists the streams of all that answered; a request for a stream goes to the daemon that
listed it (learned from those lists, asked again when a stream is unknown or the list is older than
:data:`OWNER_TTL_S`), and its answer comes back unchanged. Stream names must be unique across the
daemons behind one proxy.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import threading
import time
from typing import Any

import zmq

from .events import SCHEMA
from .publisher import bind
from .replay import REPLAY_TIMEOUT_S, merge_streams

__all__ = ["EventProxy", "HWM", "OWNER_TTL_S", "POLL_MS", "ReplayRouter"]

log = logging.getLogger("instrumentd.proxy")

HWM = 100_000  # messages queued per peer on each side before ZeroMQ drops (subscribers then replay)
OWNER_TTL_S = 10.0  # seconds a learned stream -> daemon map is trusted before the daemons are asked again
POLL_MS = 100  # the replay loop's wait between checks of timeouts and signals
RECONNECT_MS = 10  # a backend daemon not yet bound (starting) is tried again this often: connected before its first events


class EventProxy:
    """XSUB (connected to ``backends``) <-> XPUB (bound on ``frontend``), run by ``zmq.proxy_steerable`` in a thread.

    Parameters
    ----------
    backends : the daemons' PUB endpoints
    frontend : the endpoint subscribers connect to
    front_context, back_context : ZeroMQ contexts for each side (CurveZMQ server / client settings)
    hwm : messages queued per peer on each side
    """

    def __init__(self, backends: list[str], frontend: str, front_context: Any, back_context: Any, hwm: int = HWM):
        self.xpub = front_context.socket(zmq.XPUB)
        self.xpub.setsockopt(zmq.SNDHWM, hwm)
        self.xpub.setsockopt(zmq.LINGER, 0)
        bind(self.xpub, frontend, "frontend")
        self.xsub = back_context.socket(zmq.XSUB)
        self.xsub.setsockopt(zmq.RCVHWM, hwm)
        self.xsub.setsockopt(zmq.LINGER, 0)
        self.xsub.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
        for endpoint in backends:
            self.xsub.connect(endpoint)
        # the control pair lives in a plain context of its own: CurveZMQ settings must not touch it
        self._control_context = zmq.Context()
        name = f"inproc://proxy-control-{id(self)}"
        self._control = self._control_context.socket(zmq.PAIR)
        self._control.bind(name)
        self._control_peer = self._control_context.socket(zmq.PAIR)
        self._control_peer.connect(name)
        self._thread = threading.Thread(target=self._run, name="event-proxy", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            zmq.proxy_steerable(self.xsub, self.xpub, None, self._control_peer)
        except zmq.ContextTerminated:
            pass

    def close(self) -> None:
        """Stop the proxy thread and close its sockets."""
        if self._thread.is_alive():
            self._control.send(b"TERMINATE")
            self._thread.join(5)
        for sock in (self.xpub, self.xsub, self._control, self._control_peer):
            sock.close(0)
        self._control_context.term()


@dataclasses.dataclass
class _Pending:
    """A request sent to backends: ``envelope`` (None for the proxy's own lookup) waits for ``waiting``."""

    envelope: list[bytes] | None
    waiting: set[str]
    deadline: float
    streams: dict[str, int] = dataclasses.field(default_factory=dict)
    owners: dict[str, str] = dataclasses.field(default_factory=dict)
    forward: bool = False  # a stream request (answered by one backend) rather than a list


class ReplayRouter:
    """Replay requests on ``frontend`` answered from the daemons' replay endpoints ``backends``.

    Every backend has a DEALER socket; each request sent on it carries a fresh token that the
    daemon's ROUTER echoes back, so a late answer to a request that already timed out is dropped.
    :meth:`serve` never blocks; call it when a socket is readable and every :data:`POLL_MS`.
    """

    def __init__(self, frontend: str, backends: list[str], front_context: Any, back_context: Any,
                 timeout_s: float = REPLAY_TIMEOUT_S):
        self.timeout_s = timeout_s
        self.front = front_context.socket(zmq.ROUTER)
        self.front.setsockopt(zmq.LINGER, 0)
        bind(self.front, frontend, "replay-frontend")
        self.backs: dict[str, Any] = {}
        for endpoint in backends:
            sock = back_context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
            self.backs[endpoint] = sock
        self.owner: dict[str, str] = {}  # stream -> replay endpoint of the daemon that lists it
        self.learned = float("-inf")  # time.monotonic() of the last complete lookup
        self._tokens = itertools.count()
        self._pending: dict[bytes, _Pending] = {}
        self._lookup: bytes | None = None  # token of the lookup in flight
        self._unrouted: list[tuple[list[bytes], bytes, str]] = []  # (envelope, body, stream) waiting for it

    @property
    def sockets(self) -> list[Any]:
        return [self.front, *self.backs.values()]

    def serve(self) -> None:
        """Take every request and answer waiting, then answer whatever timed out."""
        while True:
            try:
                frames = self.front.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._request(frames[:-1], frames[-1])
        for endpoint, sock in self.backs.items():
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._answer(endpoint, frames[0], frames[-1])
        now = time.monotonic()
        for token in [t for t, p in self._pending.items() if p.deadline <= now]:
            self._expire(token)

    # -- requests from clients ---------------------------------------------------------
    def _request(self, envelope: list[bytes], body: bytes) -> None:
        try:
            req = json.loads(body)
            if not isinstance(req, dict):
                raise ValueError("request must be a JSON object")
        except ValueError as exc:
            self._reply(envelope, {"error": str(exc)})
            return
        if "stream" not in req:
            self._send_all(envelope)
            return
        stream = req["stream"]
        if not isinstance(stream, str):
            self._reply(envelope, {"error": f"stream must be a name, got {stream!r}"})
            return
        if stream in self.owner and time.monotonic() - self.learned < OWNER_TTL_S:
            self._forward(envelope, body, self.owner[stream])
            return
        self._unrouted.append((envelope, body, stream))
        if self._lookup is None:
            self._lookup = self._send_all(None)

    def _send_all(self, envelope: list[bytes] | None) -> bytes:
        """Send ``{}`` to every backend; returns the token."""
        token = self._token()
        self._pending[token] = _Pending(envelope, set(self.backs), time.monotonic() + self.timeout_s)
        for endpoint in self.backs:
            if not self._send(endpoint, token, b"{}"):
                self._pending[token].waiting.discard(endpoint)
        if not self._pending[token].waiting:
            self._finish_list(token)
        return token

    def _forward(self, envelope: list[bytes], body: bytes, endpoint: str) -> None:
        token = self._token()
        if not self._send(endpoint, token, body):
            self._reply(envelope, {"error": f"replay backend {endpoint} cannot take requests (queue full)"})
            return
        self._pending[token] = _Pending(envelope, {endpoint}, time.monotonic() + self.timeout_s, forward=True)

    def _send(self, endpoint: str, token: bytes, body: bytes) -> bool:
        """Queue a request to a backend; False when its queue is full (a backend long gone)."""
        try:
            self.backs[endpoint].send_multipart([token, b"", body], flags=zmq.NOBLOCK)
        except zmq.Again:
            log.warning("replay backend %s: request queue full", endpoint)
            return False
        return True

    # -- answers from daemons ------------------------------------------------------------
    def _answer(self, endpoint: str, token: bytes, body: bytes) -> None:
        p = self._pending.get(token)
        if p is None or endpoint not in p.waiting:
            return  # the answer to a request that timed out
        p.waiting.discard(endpoint)
        if p.forward:
            del self._pending[token]
            self.front.send_multipart([*p.envelope, body])
            return
        try:
            listed = json.loads(body).get("streams", {})
        except (ValueError, AttributeError):
            listed = {}
        merge_streams(p.streams, p.owners, listed, endpoint)
        if not p.waiting:
            self._finish_list(token)

    def _expire(self, token: bytes) -> None:
        p = self._pending[token]
        late = ", ".join(sorted(p.waiting))
        log.warning("replay backend(s) %s did not answer within %g s", late, self.timeout_s)
        if p.forward:
            del self._pending[token]
            self._reply(p.envelope, {"error": f"replay backend {late} did not answer within {self.timeout_s:g} s"})
        else:
            self._finish_list(token)

    def _finish_list(self, token: bytes) -> None:
        p = self._pending.pop(token)
        self.owner = {**{s: e for s, e in self.owner.items() if e in p.waiting}, **p.owners}
        self.learned = time.monotonic()
        if p.envelope is not None:
            self._reply(p.envelope, {"streams": p.streams})
        if token == self._lookup:
            self._lookup = None
            waiting, self._unrouted = self._unrouted, []
            for envelope, body, stream in waiting:
                if stream in self.owner:
                    self._forward(envelope, body, self.owner[stream])
                else:
                    self._reply(envelope, {"error": f"no replay backend serves stream {stream!r}"})

    def _reply(self, envelope: list[bytes], answer: dict[str, Any]) -> None:
        self.front.send_multipart([*envelope, json.dumps({"schema": SCHEMA, **answer}).encode()])

    def _token(self) -> bytes:
        return next(self._tokens).to_bytes(8, "big")

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(0)
