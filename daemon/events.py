"""Event schema 1: builders, encoding, decoding and validation against ``events.schema.json``.

Three kinds, each a JSON object with ``"schema": 1`` and ``"type"``:

* ``window`` (topic ``window.<stream>``): one 3 s window's probabilities, top class, smoothed labels.
* ``segment`` (topic ``segment.<stream>``): an instrument starts or stops being predominant.
* ``status`` (topic ``status``): a heartbeat with per-stream health.

``seq`` counts a stream's window *and* segment events together, from 0, gapless, continuing
across restarts; ``status`` events have no seq and are not logged. docs/events.md has examples.
"""

from __future__ import annotations

import datetime
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from instrumentd.pipeline.errors import InstrumentdError

SCHEMA = 1
SCHEMA_FILE = Path(__file__).with_name("events.schema.json")
STATUS_TOPIC = "status"


class EventError(InstrumentdError):
    """A message that is not a valid schema-1 event."""


def topic(event: dict[str, Any]) -> str:
    """``window.<stream>``, ``segment.<stream>`` or ``status``."""
    return STATUS_TOPIC if event["type"] == "status" else f"{event['type']}.{event['stream']}"


def wall_time(epoch: float) -> str:
    """Seconds since the epoch -> UTC ISO-8601 with milliseconds, e.g. ``2026-01-05T10:00:00.250+00:00``."""
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(timespec="milliseconds")


def window_event(stream: str, seq: int, t_start: float, t_end: float, epoch: float, probabilities,
                 classes: tuple[str, ...], labels: list[str], latency_ms: float, model: str,
                 trained: bool, level_db: float | None = None) -> dict[str, Any]:
    """A window event. ``probabilities: [n_classes]`` in class order; times in seconds of stream time;
    ``level_db``: the stream's input level (RMS dBFS of the last audio read), left out when unknown."""
    probs = {c: round(float(p), 6) for c, p in zip(classes, probabilities)}
    event = {
        "schema": SCHEMA, "type": "window", "stream": stream, "seq": seq,
        "t_start": round(t_start, 4), "t_end": round(t_end, 4), "wall_time": wall_time(epoch),
        "probabilities": probs, "top": max(probs, key=probs.get), "labels": list(labels),
        "latency_ms": round(max(0.0, latency_ms), 2), "model": model, "trained": trained,
    }
    if level_db is not None:
        event["level_db"] = level_db
    return event


def segment_event(stream: str, seq: int, instrument: str, state: str, start: float, end: float | None,
                  reason: str | None, epoch: float, model: str) -> dict[str, Any]:
    """``state`` ``start`` (``end`` and ``reason`` None) or ``end`` (reason ``change``, ``end of stream``, ``shutdown``)."""
    return {
        "schema": SCHEMA, "type": "segment", "stream": stream, "seq": seq, "instrument": instrument,
        "state": state, "start": round(start, 4), "end": None if end is None else round(end, 4),
        "reason": reason, "wall_time": wall_time(epoch), "model": model,
    }


def status_event(epoch: float, uptime_s: float, device: str, model: str, trained: bool, publisher_drops: int,
                 streams: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A heartbeat; ``streams`` maps a name to its ``stream_status`` object (see the schema)."""
    return {
        "schema": SCHEMA, "type": "status", "wall_time": wall_time(epoch), "uptime_s": round(uptime_s, 3),
        "device": device, "model": model, "trained": trained, "publisher_drops": publisher_drops,
        "streams": streams,
    }


def encode(event: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; NaN or infinity is an error (JSON has neither)."""
    return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()


def decode(body: bytes | str) -> dict[str, Any]:
    """Parse and validate one event body; raises EventError on anything but a valid schema-1 event."""
    try:
        event = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, over-long integers, deep nesting
        raise EventError(f"event is not JSON ({str(exc)[:200]})") from None
    validate(event)
    return event


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of every event (``events.schema.json``)."""
    return json.loads(SCHEMA_FILE.read_text())


def validate(event: Any) -> None:
    """Raise EventError naming the first field that breaks the schema."""
    if not isinstance(event, dict) or event.get("schema") != SCHEMA:
        got = event.get("schema") if isinstance(event, dict) else type(event).__name__
        raise EventError(f"not a schema-{SCHEMA} event (schema: {got!r})")
    kind = event.get("type")
    if kind not in ("window", "segment", "status"):
        raise EventError(f"unknown event type {kind!r}")
    _check(event, schema()["$defs"][kind], kind)


# A JSON Schema interpreter for the keywords events.schema.json uses; the file stays the one definition.
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def _check(value: Any, rule: dict[str, Any], where: str) -> None:
    if "$ref" in rule:
        rule = schema()["$defs"][rule["$ref"].rsplit("/", 1)[-1]]
    fail = lambda why: EventError(f"{where}: {why} (got {value!r})")  # noqa: E731
    if "const" in rule and value != rule["const"]:
        raise fail(f"must be {rule['const']!r}")
    if "enum" in rule and value not in rule["enum"]:
        raise fail(f"must be one of {rule['enum']}")
    types = rule.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_is_type(value, t) for t in types):
            raise fail(f"must be {' or '.join(types)}")
    if _is_type(value, "number"):
        if "minimum" in rule and value < rule["minimum"]:
            raise fail(f"must be >= {rule['minimum']}")
        if "maximum" in rule and value > rule["maximum"]:
            raise fail(f"must be <= {rule['maximum']}")
    if isinstance(value, str) and "pattern" in rule and not re.search(rule["pattern"], value):
        raise fail(f"must match {rule['pattern']}")
    if isinstance(value, list):
        if len(value) > rule.get("maxItems", len(value)):
            raise fail(f"at most {rule['maxItems']} items")
        for i, item in enumerate(value):
            _check(item, rule.get("items", {}), f"{where}[{i}]")
    if isinstance(value, dict):
        for name in rule.get("required", []):
            if name not in value:
                raise EventError(f"{where}: missing {name!r}")
        props = rule.get("properties", {})
        extra = rule.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                _check(item, props[name], f"{where}.{name}")
            elif extra is False:
                raise EventError(f"{where}: unexpected field {name!r}")
            elif isinstance(extra, dict):
                _check(item, extra, f"{where}.{name}")
