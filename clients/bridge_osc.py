"""``instrumentd bridge osc``: the daemons' events as OSC messages over UDP, flat addresses, one value each.

For TouchDesigner (OSC In CHOP/DAT), Max (``udpreceive``), Ableton through Max for Live, QLab.
Addresses under ``PREFIX`` (default ``/instrumentd``), for each window of a stream:

* ``PREFIX/<stream>/top``: the window's most probable class code (string, e.g. ``vio``)
* ``PREFIX/<stream>/level``: the stream's input level in dBFS (float), when the daemon reports it
* ``PREFIX/<stream>/<cls>``: each class's probability (float 0-1), for the 11 codes
  ``cel cla flu gac gel org pia sax tru vio voi``, in that order, ``voi`` last

and for each segment event, ``PREFIX/<stream>/on/<cls>`` when the instrument starts being
predominant and ``PREFIX/<stream>/off/<cls>`` when it stops (int 1, a trigger).

OSC is for the moment: a window missed while the bridge was away is not sent late (gaps in a
stream's seq are reported on stderr, not filled).
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from .bridge import BridgeSettings

HELP = "send the events as OSC messages over UDP (TouchDesigner, Max, QLab)"
DESCRIPTION = __doc__.split("\n", 2)[2].strip()
TOPICS = ["window", "segment"]
DEFAULT_OSC = "udp://127.0.0.1:9000"
WARN_EVERY_S = 10.0  # at most one warning this often about messages that could not be sent

log = logging.getLogger("instrumentd.clients.bridge_osc")


@dataclasses.dataclass
class Settings(BridgeSettings):
    """``[bridge.osc]``: where the packets go and the address prefix."""

    osc: str = DEFAULT_OSC
    prefix: str = "/instrumentd"

    def __post_init__(self) -> None:
        from instrumentd.pipeline.errors import ParameterError

        self.host, self.port = parse_target(self.osc)
        if not self.prefix.startswith("/") or self.prefix.endswith("/") or any(c in self.prefix for c in " #*?[]{},"):
            raise ParameterError(f"--prefix {self.prefix!r} must be an OSC address like /instrumentd")


def parse_target(url: str) -> tuple[str, int]:
    """``udp://host:9000`` -> ``("host", 9000)``; anything else is a ParameterError."""
    from instrumentd.pipeline.errors import ParameterError

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "udp" or not parts.hostname or not port or parts.path not in ("", "/"):
        raise ParameterError(f"--osc {url!r} is not udp://HOST:PORT")
    return parts.hostname, port


def window_messages(prefix: str, window: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(address, value)`` pairs for one window event: top, level (if known), then the 11 probabilities."""
    base = f"{prefix}/{window['stream']}"
    out: list[tuple[str, Any]] = [(f"{base}/top", window["top"])]
    if "level_db" in window:
        out.append((f"{base}/level", float(window["level_db"])))
    out += [(f"{base}/{cls}", float(p)) for cls, p in window["probabilities"].items()]
    return out


def segment_message(prefix: str, segment: dict[str, Any]) -> tuple[str, int]:
    """``(PREFIX/<stream>/on/<cls>, 1)`` for a start, ``.../off/<cls>`` for an end."""
    edge = "on" if segment["state"] == "start" else "off"
    return f"{prefix}/{segment['stream']}/{edge}/{segment['instrument']}", 1


class OscBridge:
    """Sends each event's messages to one UDP receiver, one datagram per message.

    A message is its padded address and type tag, cached per address, then the value, both
    encoded by python-osc's ``osc_types``: a window's 13 messages cost a few microseconds each
    besides the sends.
    """

    def __init__(self, settings: Settings):
        from pythonosc.parsing import osc_types

        from instrumentd.pipeline.errors import ParameterError

        self.types = osc_types
        self.prefix = settings.prefix
        self.target = (settings.host, settings.port)
        try:
            family, kind, proto, _, address = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_DGRAM)[0]
        except socket.gaierror as exc:
            raise ParameterError(f"--osc {settings.osc!r}: cannot resolve {settings.host!r} ({exc.strerror})") from None
        self.sock = socket.socket(family, kind, proto)
        self.sock.setblocking(False)
        self.address = address
        self._heads: dict[tuple[str, str], bytes] = {}  # (address, type tag) -> their OSC encoding
        self.sent = 0
        self.failed = 0
        self._warned_at = -WARN_EVERY_S

    def handle(self, event: dict[str, Any]) -> None:
        if event["type"] == "window":
            messages = window_messages(self.prefix, event)
        elif event["type"] == "segment":
            messages = [segment_message(self.prefix, event)]
        else:
            return
        for address, value in messages:
            self._send(address, value)

    def _send(self, address: str, value: str | float | int) -> None:
        osc_types = self.types
        tag = ",s" if isinstance(value, str) else ",f" if isinstance(value, float) else ",i"
        head = self._heads.get((address, tag))
        if head is None:
            head = self._heads[address, tag] = osc_types.write_string(address) + osc_types.write_string(tag)
        body = (osc_types.write_string(value) if tag == ",s" else
                osc_types.write_float(value) if tag == ",f" else osc_types.write_int(value))
        try:
            self.sock.sendto(head + body, self.address)
            self.sent += 1
        except OSError as exc:
            self.failed += 1  # a full socket buffer or no route: UDP offers no other remedy
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                log.warning("%d OSC message(s) could not be sent to %s:%d so far (%s)",
                            self.failed, *self.target, exc.strerror or exc)

    def close(self) -> None:
        self.sock.close()

    def summary(self) -> str:
        return f"{self.sent} OSC messages sent, {self.failed} failed"


def open(settings: Settings) -> OscBridge:  # noqa: A001 - the bridge-module interface
    return OscBridge(settings)
