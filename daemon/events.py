"""Event schema 1: builders, encoding, decoding and validation against ``events.schema.json``.

Four kinds, each a JSON object with ``"schema": 1`` and ``"type"``:

* ``window`` (topic ``window.<stream>``): one 3 s window's probabilities, top class, smoothed labels.
* ``segment`` (topic ``segment.<stream>``): an instrument starts or stops being predominant.
* ``source`` (topic ``source.<stream>``): the stream's source changes state (:data:`SOURCE_STATES`).
* ``status`` (topic ``status``): a heartbeat with per-stream health.

``seq`` counts a stream's window, segment *and* source events together, from 0, gapless, continuing
across restarts; ``status`` events have no seq and are not logged. docs/events.md has examples.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from functools import cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import orjson

from instrumentd.pipeline.errors import EXIT_ERROR, InstrumentdError

SCHEMA = 1
SCHEMA_FILE = Path(__file__).with_name("events.schema.json")
STATUS_TOPIC = "status"
TYPES = ("window", "segment", "source", "status")
TOGETHER_FROM = 6  # window_events builds this many windows or more in one numpy pass, fewer one by one
SOURCE_STATES = ("starting", "running", "down", "up", "silent", "sound", "ended", "failed")


class EventError(InstrumentdError):
    """A message that is not a valid schema-1 event."""

    exit_code = EXIT_ERROR


def topic(event: dict[str, Any]) -> str:
    """``window.<stream>``, ``segment.<stream>``, ``source.<stream>`` or ``status``."""
    return STATUS_TOPIC if event["type"] == "status" else f"{event['type']}.{event['stream']}"


def wall_time(epoch: float) -> str:
    """Seconds since the epoch -> UTC ISO-8601 with milliseconds, e.g. ``2026-01-05T10:00:00.250+00:00``."""
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(timespec="milliseconds")


def wall_times(epochs: np.ndarray) -> list[str]:
    """:func:`wall_time` of every one of ``epochs: float [n]`` (seconds since the epoch) in one pass: the
    same text, rounded to the microsecond (half to even) and cut to the millisecond as datetime does."""
    fraction, whole = np.modf(np.asarray(epochs, np.float64))
    micro = np.round(fraction * 1e6).astype(np.int64)
    whole = whole.astype(np.int64) + np.floor_divide(micro, 1_000_000)
    milli = np.remainder(micro, 1_000_000) // 1000
    seconds = np.datetime_as_string(whole.astype("datetime64[s]"), unit="s")
    return [f"{s}.{m:03d}+00:00" for s, m in zip(seconds.tolist(), milli.tolist())]


def window_events(streams: Sequence[str], seqs: Sequence[int], t_start, t_end, epochs, probabilities,
                  classes: tuple[str, ...], labels: Sequence[list[str]], latency_ms, model: str, trained: bool,
                  level_db: Sequence[float | None] | None = None,
                  none: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
    """A step's window events, built together in one numpy pass (one by one below :data:`TOGETHER_FROM`).
    Per window (``n`` of them): ``streams``, ``seqs``, ``t_start`` / ``t_end`` (seconds of stream time),
    ``epochs`` (when each window was heard, seconds since the epoch), ``probabilities: [n, n_classes]``
    in class order, ``labels``, ``latency_ms``, ``level_db`` (the window's RMS, dBFS; None: unknown, left
    out) and ``none`` (why it names no instrument, model/decision.py; None when it names one). The
    events are :func:`window_event`'s, field for field; their numbers are checked here, all at once, so
    that :func:`encode` may skip its check (``checked=True``)."""
    n = len(streams)
    known = [v for v in level_db if v is not None] if level_db is not None else []  # the levels given
    if n < TOGETHER_FROM:  # numpy's calls cost more than they save
        built = [window_event(streams[k], seqs[k], float(t_start[k]), float(t_end[k]), float(epochs[k]),
                              probabilities[k], classes, labels[k], float(latency_ms[k]), model, trained,
                              None if level_db is None else level_db[k], None if none is None else none[k])
                 for k in range(n)]
        given = [float(x) for x in (*t_start, *t_end, *epochs, *latency_ms, *known)]
        if _finite(given) and all(_finite(event["probabilities"]) for event in built):
            return built
    else:
        numbers = [np.asarray(x, np.float64) for x in (probabilities, t_start, t_end, epochs, latency_ms)]
        if all(np.isfinite(x).all() for x in (*numbers, np.asarray(known, np.float64))):
            return _window_events(streams, seqs, *numbers, classes, labels, model, trained, level_db, none)
    raise ValueError("NaN or infinity in a window event: JSON has neither")


def _window_events(streams, seqs, probabilities, t_start, t_end, epochs, latency_ms, classes, labels, model,
                   trained, level_db, none) -> list[dict[str, Any]]:
    """:func:`window_events`' numpy pass, on float64 arrays whose numbers are all finite."""
    n = len(streams)
    probs = np.round(probabilities.reshape(n, len(classes)), 6)
    tops = [classes[k] for k in probs.argmax(axis=1).tolist()]  # the first of equals, as max() takes
    starts, ends = np.round(t_start, 4).tolist(), np.round(t_end, 4).tolist()
    latency = np.round(np.maximum(0.0, latency_ms), 2).tolist()
    levels = [None if v is None else round(float(v), 1) for v in level_db] if level_db is not None else [None] * n
    reasons = none if none is not None else [None] * n
    out = []
    for k, (row, wall) in enumerate(zip(probs.tolist(), wall_times(epochs))):
        event = {
            "schema": SCHEMA, "type": "window", "stream": streams[k], "seq": seqs[k],
            "t_start": starts[k], "t_end": ends[k], "wall_time": wall,
            "probabilities": dict(zip(classes, row)), "top": tops[k], "labels": list(labels[k]),
            "none": reasons[k], "latency_ms": latency[k], "model": model, "trained": trained,
        }
        if levels[k] is not None:
            event["level_db"] = levels[k]
        out.append(event)
    return out


def window_event(stream: str, seq: int, t_start: float, t_end: float, epoch: float, probabilities,
                 classes: tuple[str, ...], labels: list[str], latency_ms: float, model: str,
                 trained: bool, level_db: float | None = None, none: str | None = None) -> dict[str, Any]:
    """A window event, alone (:func:`window_events` builds a step's together). ``probabilities: [n_classes]``
    in class order; times in seconds of stream time; ``level_db``: the window's RMS, dBFS (left out when
    unknown); ``none``: why the window names no instrument (model/decision.py), None when it names one."""
    probs = {c: round(float(p), 6) for c, p in zip(classes, probabilities)}
    event = {
        "schema": SCHEMA, "type": "window", "stream": stream, "seq": seq,
        "t_start": round(t_start, 4), "t_end": round(t_end, 4), "wall_time": wall_time(epoch),
        "probabilities": probs, "top": max(probs, key=probs.get), "labels": list(labels), "none": none,
        "latency_ms": round(max(0.0, latency_ms), 2), "model": model, "trained": trained,
    }
    if level_db is not None:
        event["level_db"] = round(float(level_db), 1)
    return event


def segment_event(stream: str, seq: int, instrument: str, state: str, start: float, end: float | None,
                  reason: str | None, epoch: float, model: str) -> dict[str, Any]:
    """``state`` ``start`` (``end`` and ``reason`` None) or ``end`` (reason ``change``, ``end of stream``,
    ``source failed``, ``shutdown``)."""
    return {
        "schema": SCHEMA, "type": "segment", "stream": stream, "seq": seq, "instrument": instrument,
        "state": state, "start": round(start, 4), "end": None if end is None else round(end, 4),
        "reason": reason, "wall_time": wall_time(epoch), "model": model,
    }


def source_event(stream: str, seq: int, state: str, reason: str, source: str, epoch: float) -> dict[str, Any]:
    """A lifecycle change: ``state`` one of :data:`SOURCE_STATES`, ``reason`` one line of why, ``source`` its spec."""
    return {
        "schema": SCHEMA, "type": "source", "stream": stream, "seq": seq, "state": state, "reason": reason,
        "source": source, "wall_time": wall_time(epoch),
    }


def status_event(epoch: float, uptime_s: float, device: str, model: str, trained: bool, publisher_drops: int,
                 streams: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A heartbeat; ``streams`` maps a name to its ``stream_status`` object (see the schema)."""
    return {
        "schema": SCHEMA, "type": "status", "wall_time": wall_time(epoch), "uptime_s": round(uptime_s, 3),
        "device": device, "model": model, "trained": trained, "publisher_drops": publisher_drops,
        "streams": streams,
    }


def encode(event: dict[str, Any], checked: bool = False) -> bytes:
    """Compact UTF-8 JSON; NaN or infinity is a ValueError (JSON has neither), unless ``checked``: the
    caller knows every number is finite (:func:`window_events` checks a step's together).

    orjson writes it (a third of the json module's time for a window event, the check included); it
    would write NaN as ``null``, so every number is checked first. Text that is not valid UTF-8 (a
    file name's undecodable bytes, kept as surrogates) goes through the json module, as ``\\u`` escapes."""
    if not checked and not _finite(event):
        raise ValueError("NaN or infinity in an event: JSON has neither")
    try:
        return orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:  # text orjson refuses (a file name that is not UTF-8, kept as surrogates): json escapes it
        return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()


def _finite(value: Any) -> bool:
    """False if a number anywhere in ``value`` (dicts, lists and tuples walked) is NaN or infinite."""
    kind = type(value)
    if kind is dict:
        values = value.values()
    elif kind is list or kind is tuple:
        values = value
    else:
        try:
            return math.isfinite(value)
        except (OverflowError, TypeError):  # an integer past the largest float; not a number (a string, None)
            return True
    try:
        return math.isfinite(math.fsum(values))  # all numbers (a window's probabilities): one call in C
    except ValueError:  # inf - inf
        return False
    except (TypeError, OverflowError):  # strings, None or containers among them: one by one
        pass
    for item in values:
        kind = type(item)
        if kind is float:
            if item - item != 0:  # NaN or infinite
                return False
        elif not (kind is str or kind is int or kind is bool or item is None or _finite(item)):
            return False
    return True


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
    if kind not in TYPES:
        raise EventError(f"unknown event type {kind!r}")
    _definition(kind)(event, kind)


# A JSON Schema compiler for the keywords events.schema.json uses; the file stays the one definition.
# Each rule becomes a function ``check(value, where)`` once, so that a subscriber validating 1,000
# events a second does not walk the schema for each.
_TYPES = {"object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,), "null": (type(None),),
          "integer": (int,), "number": (int, float)}
_Check = Callable[[Any, str], None]


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def _fail(value: Any, where: str, why: str) -> EventError:
    return EventError(f"{where}: {why} (got {value!r})")


@cache
def _definition(name: str) -> _Check:
    """The compiled check of ``$defs[name]`` (the schema's references do not loop)."""
    return _compile(schema()["$defs"][name])


def _compile(rule: dict[str, Any]) -> _Check:
    if "$ref" in rule:
        return _definition(rule["$ref"].rsplit("/", 1)[-1])
    steps: list[_Check] = []
    if "const" in rule:
        const = rule["const"]

        def check_const(value: Any, where: str) -> None:
            if value != const:
                raise _fail(value, where, f"must be {const!r}")
        steps.append(check_const)
    if "enum" in rule:
        enum, members = rule["enum"], frozenset(rule["enum"])  # strings and null: hashable

        def check_enum(value: Any, where: str) -> None:
            try:
                ok = value in members
            except TypeError:  # a list or an object
                ok = False
            if not ok:
                raise _fail(value, where, f"must be one of {enum}")
        steps.append(check_enum)
    if "type" in rule:
        names = [rule["type"]] if isinstance(rule["type"], str) else rule["type"]
        exact = {t for n in names for t in _TYPES[n]}  # JSON gives exact types; bool is not int here

        def check_type(value: Any, where: str) -> None:
            if type(value) not in exact and not any(_is_type(value, n) for n in names):
                raise _fail(value, where, f"must be {' or '.join(names)}")
        steps.append(check_type)
    low, high = rule.get("minimum"), rule.get("maximum")
    if low is not None or high is not None:
        def check_range(value: Any, where: str) -> None:
            if type(value) in (int, float) or _is_type(value, "number"):
                if low is not None and value < low:
                    raise _fail(value, where, f"must be >= {low}")
                if high is not None and value > high:
                    raise _fail(value, where, f"must be <= {high}")
        steps.append(check_range)
    if "pattern" in rule:
        pattern = re.compile(rule["pattern"])

        def check_pattern(value: Any, where: str) -> None:
            if isinstance(value, str) and not pattern.search(value):
                raise _fail(value, where, f"must match {rule['pattern']}")
        steps.append(check_pattern)
    if "items" in rule or "maxItems" in rule:
        items, most = _compile(rule.get("items", {})), rule.get("maxItems")

        def check_list(value: Any, where: str) -> None:
            if isinstance(value, list):
                if most is not None and len(value) > most:
                    raise _fail(value, where, f"at most {most} items")
                for i, item in enumerate(value):
                    items(item, f"{where}[{i}]")
        steps.append(check_list)
    if "properties" in rule or "required" in rule or "additionalProperties" in rule:
        required = rule.get("required", [])
        props = {name: _compile(r) for name, r in rule.get("properties", {}).items()}
        extra = rule.get("additionalProperties", True)
        extra_check = _compile(extra) if isinstance(extra, dict) else None

        def check_object(value: Any, where: str) -> None:
            if not isinstance(value, dict):
                return
            for name in required:
                if name not in value:
                    raise EventError(f"{where}: missing {name!r}")
            for name, item in value.items():
                check = props.get(name)
                if check is not None:
                    check(item, f"{where}.{name}")
                elif extra is False:
                    raise EventError(f"{where}: unexpected field {name!r}")
                elif extra_check is not None:
                    extra_check(item, f"{where}.{name}")
        steps.append(check_object)
    if len(steps) == 1:
        return steps[0]

    def check_all(value: Any, where: str) -> None:
        for step in steps:
            step(value, where)
    return check_all
