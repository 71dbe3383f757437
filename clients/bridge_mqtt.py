"""``instrumentd bridge mqtt``: the daemons' events on an MQTT broker, with Home Assistant discovery.

Topics under ``PREFIX`` (default ``instrumentd``), payloads UTF-8 JSON:

* ``PREFIX/<stream>/window``: each window event as published by the daemon (QoS ``--qos``).
* ``PREFIX/<stream>/instrument`` (retained): the current predominant set, updated each window:
  ``{"labels": ["vio"], "names": "Violin", "top": "vio", "confidence": 0.97, "level_db": -21.5,
  "wall_time": ...}``; ``names`` is ``"none"`` when nothing is predominant, ``confidence`` is the
  top class's probability, ``level_db`` is there when the daemon reports it.
* ``PREFIX/<stream>/segment``: each segment event (an instrument starts or stops).
* ``PREFIX/<stream>/source`` (retained): the stream's source state, ``{"stream", "state", "wall_time"}``
  (a ``source`` lifecycle event's body, or the state the heartbeat reports when it changes).
* ``PREFIX/status`` (retained): ``online`` while the bridge is connected; ``offline`` when it stops,
  and the broker sends ``offline`` for it (its last will) when it dies or loses the connection.

With ``--ha-discovery`` each stream is announced to Home Assistant as a device with four sensors
(instrument, confidence, level, state), retained under ``HA_PREFIX/sensor/instrumentd_<stream>/<sensor>/config``
and tied to ``PREFIX/status`` for availability. Retained messages are sent again after every
reconnection, so a broker that restarted without persistence has them back; that is also why they
go at QoS 0 (TCP delivers them while connected; a lost connection brings them again), which halves
the broker round trips at a high event rate. ``online``/``offline`` go at QoS 1.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from .bridge import BridgeSettings

HELP = "publish the events to an MQTT broker (Home Assistant discovery with --ha-discovery)"
DESCRIPTION = __doc__.split("\n", 2)[2].strip()
TOPICS = ["window", "segment", "source", "status"]
DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
PORTS = {"mqtt": 1883, "mqtts": 8883}
ENV_USERNAME = "INSTRUMENTD_MQTT_USERNAME"
ENV_PASSWORD = "INSTRUMENTD_MQTT_PASSWORD"
KEEPALIVE_S = 30
RECONNECT_MAX_S = 30  # paho's reconnect delay doubles from 1 s up to this
CLOSE_TIMEOUT_S = 5.0  # how long the last messages may take to reach the broker at exit
QUEUE_LIMIT = 10000  # QoS 1-2 messages paho holds for the broker at most (during an outage)
INFLIGHT_LIMIT = 200  # QoS 1-2 messages awaiting the broker's acknowledgement at once
WARN_EVERY_S = 10.0  # at most one warning this often about messages the broker did not get

log = logging.getLogger("instrumentd.clients.bridge_mqtt")


@dataclasses.dataclass
class Settings(BridgeSettings):
    """``[bridge.mqtt]``: the broker, TLS and credentials, topic prefixes, Home Assistant discovery."""

    replay: list[str] = dataclasses.field(default_factory=list)
    broker: str = DEFAULT_BROKER
    prefix: str = "instrumentd"
    qos: int = 0
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert: str | None = None
    key: str | None = None
    ha_discovery: bool = False
    ha_prefix: str = "homeassistant"

    def __post_init__(self) -> None:
        from instrumentd.pipeline.errors import ParameterError

        self.host, self.port, self.tls = parse_broker(self.broker)
        if self.qos not in (0, 1, 2):
            raise ParameterError(f"--qos must be 0, 1 or 2, got {self.qos}")
        for name in ("prefix", "ha_prefix"):
            value = getattr(self, name)
            if not value or any(c in value for c in "+#") or value.startswith("/") or value.endswith("/"):
                raise ParameterError(f"--{name.replace('_', '-')} {value!r} must be a topic without wildcards "
                                     "or a leading or trailing /")
        if (self.ca_file or self.cert or self.key) and not self.tls:
            raise ParameterError(f"--ca-file, --cert and --key need an mqtts:// broker, got {self.broker!r}")
        if bool(self.cert) != bool(self.key):
            raise ParameterError("--cert and --key go together (the client certificate and its key)")
        for name in ("ca_file", "cert", "key"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise ParameterError(f"--{name.replace('_', '-')} {path!r}: no such file")
        self.username = self.username or os.environ.get(ENV_USERNAME) or None
        self.password = self.password or os.environ.get(ENV_PASSWORD) or None
        if self.password and not self.username:
            raise ParameterError(f"a password needs a --username (or {ENV_USERNAME})")


def parse_broker(url: str) -> tuple[str, int, bool]:
    """``mqtt://host:1883`` -> ``("host", 1883, False)``; ``mqtts://`` means TLS. A bad URL is a ParameterError."""
    from instrumentd.pipeline.errors import ParameterError

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in PORTS or not parts.hostname or port == -1 or parts.path not in ("", "/"):
        raise ParameterError(f"--broker {url!r} is not mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    return parts.hostname, port or PORTS[parts.scheme], parts.scheme == "mqtts"


def instrument_state(window: dict[str, Any]) -> dict[str, Any]:
    """The retained ``instrument`` payload of a window event."""
    from instrumentd.model.classes import NAMES

    state = {
        "labels": window["labels"],
        "names": ", ".join(NAMES[c] for c in window["labels"]) or "none",
        "top": window["top"],
        "confidence": window["probabilities"][window["top"]],
        "wall_time": window["wall_time"],
    }
    if "level_db" in window:
        state["level_db"] = window["level_db"]
    return state


def discovery_configs(stream: str, prefix: str, ha_prefix: str) -> dict[str, dict[str, Any]]:
    """Home Assistant MQTT discovery: config topic -> payload for the four sensors of ``stream``'s device."""
    from instrumentd import __version__

    device = {"identifiers": [f"instrumentd_{stream}"], "name": f"instrumentd {stream}", "manufacturer": "instrumentd",
              "model": "predominant-instrument recognition", "sw_version": __version__}
    sensors = {
        "instrument": {"name": "Instrument", "state_topic": f"{prefix}/{stream}/instrument",
                       "value_template": "{{ value_json.names }}", "icon": "mdi:music",
                       "json_attributes_topic": f"{prefix}/{stream}/instrument"},
        "confidence": {"name": "Confidence", "state_topic": f"{prefix}/{stream}/instrument",
                       "value_template": "{{ (value_json.confidence * 100) | round(1) }}",
                       "unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:gauge"},
        "level": {"name": "Level", "state_topic": f"{prefix}/{stream}/instrument",
                  "value_template": "{{ value_json.level_db if value_json.level_db is defined else None }}",
                  "unit_of_measurement": "dBFS", "state_class": "measurement", "icon": "mdi:volume-high"},
        "state": {"name": "State", "state_topic": f"{prefix}/{stream}/source",
                  "value_template": "{{ value_json.state }}", "icon": "mdi:microphone"},
    }
    out = {}
    for key, sensor in sensors.items():
        out[f"{ha_prefix}/sensor/instrumentd_{stream}/{key}/config"] = {
            **sensor, "unique_id": f"instrumentd_{stream}_{key}", "object_id": f"instrumentd_{stream}_{key}",
            "availability_topic": f"{prefix}/status", "payload_available": "online",
            "payload_not_available": "offline", "device": device,
        }
    return out


class MqttBridge:
    """Publishes events on a broker through paho's network thread, which reconnects by itself.

    The thread also writes: several messages queued while it was waking go out in one send, which
    costs less than one system call per message from the bridge's own loop (measured).
    """

    def __init__(self, settings: Settings):
        import ssl

        import paho.mqtt.client as mqtt

        from instrumentd.pipeline.errors import ParameterError

        self.settings = settings
        self.status_topic = f"{settings.prefix}/status"
        self.retained: dict[str, bytes] = {}  # topic -> last retained payload, sent again on each reconnection
        self.sources: dict[str, str] = {}  # stream -> source state last published
        self.lifecycle: set[str] = set()  # streams with source lifecycle events: the heartbeat's state is not used
        self.lock = threading.Lock()  # the retained cache is read by paho's thread on (re)connection
        self.connected = False  # since the broker's last CONNACK, as paho's thread saw it
        self.published = 0
        self.unsent = 0
        self._warned_at = -WARN_EVERY_S
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=settings.client_id or "")
        self.client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        if settings.username:
            self.client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            try:
                self.client.tls_set(ca_certs=settings.ca_file, certfile=settings.cert, keyfile=settings.key)
            except (ssl.SSLError, OSError) as exc:
                raise ParameterError(f"--ca-file, --cert or --key: cannot load ({exc})") from None
        self.client.max_queued_messages_set(QUEUE_LIMIT)
        self.client.max_inflight_messages_set(INFLIGHT_LIMIT)
        self.client.reconnect_delay_set(1, RECONNECT_MAX_S)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.connect_async(settings.host, settings.port, KEEPALIVE_S)
        self.client.loop_start()

    # -- paho's thread --------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.warning("broker %s refused the connection: %s; retrying", self.settings.broker, reason)
            return
        log.info("connected to %s", self.settings.broker)
        self.connected = True
        # small messages at once: Nagle's algorithm would hold each until the last is acknowledged
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.publish(self.status_topic, b"online", qos=1, retain=True)
        with self.lock:
            for topic, payload in self.retained.items():
                client.publish(topic, payload, qos=0, retain=True)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure and self.connected:  # not after a refused connection: that was said
            log.warning("lost the broker %s (%s); reconnecting", self.settings.broker, reason)
        self.connected = False

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        log.warning("cannot reach the broker %s; retrying", self.settings.broker)

    # -- events ----------------------------------------------------------------
    def handle(self, event: dict[str, Any]) -> None:
        """Publish one event (window, segment, source or status) on its topics."""
        from instrumentd.daemon.events import encode

        kind, prefix = event["type"], self.settings.prefix
        if kind == "status":
            for stream, st in event["streams"].items():
                self._first_sight(stream)
                if stream not in self.lifecycle and self.sources.get(stream) != st["state"]:
                    self._source(stream, {"stream": stream, "state": st["state"], "wall_time": event["wall_time"]})
            return
        stream = event["stream"]
        self._first_sight(stream)
        if kind == "window":
            self._publish(f"{prefix}/{stream}/window", encode(event), self.settings.qos)
            self._retain(f"{prefix}/{stream}/instrument", instrument_state(event))
        elif kind == "segment":
            self._publish(f"{prefix}/{stream}/segment", encode(event), self.settings.qos)
        elif kind == "source":
            self.lifecycle.add(stream)
            self._source(stream, event)

    def _first_sight(self, stream: str) -> None:
        if stream in self.sources:
            return
        self.sources[stream] = ""
        if self.settings.ha_discovery:
            for topic, config in discovery_configs(stream, self.settings.prefix, self.settings.ha_prefix).items():
                self._retain(topic, config)

    def _source(self, stream: str, body: dict[str, Any]) -> None:
        self.sources[stream] = body["state"]
        self._retain(f"{self.settings.prefix}/{stream}/source", body)

    def _retain(self, topic: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        with self.lock:
            self.retained[topic] = body
        self._publish(topic, body, 0, retain=True)

    def _publish(self, topic: str, body: bytes, qos: int, retain: bool = False) -> None:
        import paho.mqtt.client as mqtt

        info = self.client.publish(topic, body, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS or (qos > 0 and info.rc == mqtt.MQTT_ERR_NO_CONN):  # QoS 1-2: held, sent on reconnection
            self.published += 1
            return
        self.unsent += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning("%d message(s) not sent so far: no connection to the broker %s (%s); retained state "
                        "is sent again on reconnection", self.unsent, self.settings.broker, mqtt.error_string(info.rc))

    def close(self) -> None:
        """Say ``offline`` (retained), let the last messages go out, disconnect."""
        if self.client.is_connected():
            info = self.client.publish(self.status_topic, b"offline", qos=1, retain=True)
            try:
                info.wait_for_publish(CLOSE_TIMEOUT_S)
            except (RuntimeError, ValueError):
                pass  # the connection went in the meantime: the broker sends the last will instead
        self.client.disconnect()
        self.client.loop_stop()

    def summary(self) -> str:
        return f"{self.published} messages published, {self.unsent} not sent (no broker connection)"


def open(settings: Settings) -> MqttBridge:  # noqa: A001 - the bridge-module interface
    return MqttBridge(settings)
