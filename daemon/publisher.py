"""ZeroMQ publisher: multipart ``[topic, body]`` on an XPUB socket that never blocks.

Each subscriber has a queue of ``sndhwm`` messages. ``XPUB_NODROP`` makes a full queue visible:
the send fails at once (``NOBLOCK``), the message is counted in :attr:`Publisher.drops` and the
daemon carries on. A message dropped this way reaches no subscriber; all of them can fetch it
from the replay endpoint, since it was logged before it was sent.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from instrumentd.pipeline.errors import InstrumentdError

from .events import encode, topic

log = logging.getLogger("instrumentd.daemon.publisher")


class EndpointError(InstrumentdError):
    """An endpoint that cannot be bound (in use, bad address)."""


def bind(socket: zmq.Socket, endpoint: str, what: str) -> None:
    """Bind or raise EndpointError with advice."""
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as exc:
        socket.close(linger=0)
        raise EndpointError(
            f"cannot bind {what} endpoint {endpoint} ({exc.strerror}); is another daemon running? choose another with --{what}"
        ) from None


class Publisher:
    """Publishes events on ``endpoint``.

    Parameters
    ----------
    endpoint : e.g. ``tcp://127.0.0.1:5555``
    sndhwm : messages queued per subscriber before sends fail and are counted
    context : ZeroMQ context (default: the process's shared one)
    """

    def __init__(self, endpoint: str, sndhwm: int = 10000, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.socket = (context or zmq.Context.instance()).socket(zmq.XPUB)
        self.socket.setsockopt(zmq.XPUB_NODROP, 1)
        self.socket.setsockopt(zmq.SNDHWM, sndhwm)
        self.socket.setsockopt(zmq.LINGER, 2000)
        bind(self.socket, endpoint, "pub")
        self.drops = 0
        self.sent = 0
        self.subscriptions = 0

    def publish(self, event: dict[str, Any]) -> bool:
        """Send one event; False (and counted) when a subscriber's queue is full."""
        try:
            self.socket.send_multipart([topic(event).encode(), encode(event)], flags=zmq.NOBLOCK)
        except zmq.Again:
            self.drops += 1
            return False
        self.sent += 1
        return True

    def poll_subscriptions(self) -> None:
        """Read (un)subscription notices so they do not pile up; keeps :attr:`subscriptions` current."""
        while True:
            try:
                msg = self.socket.recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[:1] == b"\x01":
                self.subscriptions += 1
                log.info("subscriber joined (topic %r)", msg[1:].decode(errors="replace"))
            elif msg[:1] == b"\x00":
                self.subscriptions = max(0, self.subscriptions - 1)

    def close(self) -> None:
        """Close after queued messages are sent (up to the 2 s linger)."""
        self.socket.close()
