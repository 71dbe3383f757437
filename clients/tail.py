"""``instrumentd tail``: print the daemons' events as they come, one line each: JSON, or text for people.

``--format text`` prints ``12:03:04 radio Violin 0.97``: the local time the window ended, the
stream, the predominant instrument(s) with their probabilities (or ``-`` and the top class when
none is predominant); a segment as ``start Violin`` or ``end Violin 41.0-47.5 s``; a source
lifecycle event as ``source ended``; a heartbeat as ``status`` and its streams' states.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from typing import Any, Callable

from .subscribe import TOPICS

WAIT_NOTICE_S = 3.0  # seconds without an event before saying so on stderr


def parse_topics(text: str, status: bool = False) -> list[str]:
    """``"window,segment"`` -> ``["window", "segment"]``; an unknown kind is a ParameterError."""
    from instrumentd.pipeline.errors import ParameterError

    topics = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in topics if t not in TOPICS]
    if bad or not topics:
        raise ParameterError(f"--topics {text!r}: choose from {', '.join(TOPICS)}")
    return topics + (["status"] if status and "status" not in topics else [])


def parse_instruments(values: list[str] | None) -> set[str]:
    """Class codes from codes or names (``pia``, ``Piano``, ``acoustic guitar``); a ParameterError names the bad one."""
    from instrumentd.model.classes import CLASSES, NAMES
    from instrumentd.pipeline.errors import ParameterError

    by_name = {**{c: c for c in CLASSES}, **{n.lower(): c for c, n in NAMES.items()}}
    out = set()
    for v in values or ():
        code = by_name.get(v.strip().lower())
        if code is None:
            raise ParameterError(f"--instrument {v!r} is not one of {', '.join(CLASSES)}")
        out.add(code)
    return out


class Filter:
    """Which events to keep.

    Parameters
    ----------
    streams : stream names to keep (empty: all)
    instruments : class codes: windows whose top or labels include one, segments of one (empty: all)
    min_prob : windows in which an instrument (of ``instruments``, if any) reaches this probability
    topics : event kinds to keep
    """

    def __init__(self, streams: set[str], instruments: set[str], min_prob: float | None, topics: list[str]):
        from instrumentd.pipeline.errors import ParameterError

        if min_prob is not None and not 0 <= min_prob <= 1:
            raise ParameterError(f"--min-prob must be in [0, 1], got {min_prob}")
        self.streams, self.instruments, self.min_prob, self.topics = streams, instruments, min_prob, set(topics)

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event["type"]
        if kind not in self.topics:
            return False
        if kind == "status":
            return True
        if self.streams and event["stream"] not in self.streams:
            return False  # a topic prefix also matches longer stream names
        if kind == "source":
            return True  # the stream's lifecycle: no instrument or probability to filter on
        if kind == "segment":
            return not self.instruments or event["instrument"] in self.instruments
        probs = event["probabilities"]
        if self.min_prob is not None:
            return any(probs[c] >= self.min_prob for c in (self.instruments or probs))
        return not self.instruments or event["top"] in self.instruments or bool(self.instruments & set(event["labels"]))


def follow(endpoints: list[str], topics: list[str], streams: list[str] | None, keep: Filter,
           write: Callable[[dict[str, Any]], None], replayer: Any = None) -> None:
    """Hand every event of ``topics`` (of ``streams``; None = all) from the daemons at ``endpoints`` that
    ``keep`` accepts to ``write``, seq gaps filled by ``replayer`` (a :class:`~.subscribe.Replayer` or
    None), until interrupted. A daemon silent for :data:`WAIT_NOTICE_S` seconds is noted on stderr once."""
    from .subscribe import Feed

    feed = Feed(endpoints, topics, streams, replayer, "tail")
    quiet_since, told = time.monotonic(), False
    try:
        while True:
            events = feed.next(1.0)
            if not events:
                if not told and time.monotonic() - quiet_since > WAIT_NOTICE_S:
                    print(f"instrumentd tail: no events from {', '.join(endpoints)} in {WAIT_NOTICE_S:g} s; "
                          "waiting", file=sys.stderr, flush=True)
                    told = True
                continue
            quiet_since, told = time.monotonic(), False
            for event in events:
                if keep(event):
                    write(event)
    finally:
        feed.close()


def _print(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def text_line(event: dict[str, Any]) -> str:
    """One event as a line for people: ``12:03:04 radio Violin 0.97`` (local time)."""
    from instrumentd.model.classes import NAMES

    clock = datetime.datetime.fromisoformat(event["wall_time"]).astimezone().strftime("%H:%M:%S")
    kind = event["type"]
    if kind == "status":
        states = " ".join(f"{name}={st['state']}" for name, st in event["streams"].items())
        return f"{clock} status up {event['uptime_s']:.0f} s {states}".rstrip()
    head = f"{clock} {event['stream']}"
    if kind == "window":
        probs = event["probabilities"]
        if event["labels"]:
            return f"{head} " + ", ".join(f"{NAMES[c]} {probs[c]:.2f}" for c in event["labels"])
        if event.get("none"):
            return f"{head} - {event['none']}"
        return f"{head} - (top {NAMES[event['top']]} {probs[event['top']]:.2f})"
    if kind == "segment":
        if event["state"] == "start":
            return f"{head} start {NAMES[event['instrument']]}"
        reason = "" if event["reason"] == "change" else f" ({event['reason']})"
        return f"{head} end {NAMES[event['instrument']]} {event['start']:.1f}-{event['end']:.1f} s{reason}"
    return f"{head} source {event['state']}"


FORMATS: dict[str, Callable[[dict[str, Any]], None]] = {
    "json": lambda event: _print(json.dumps(event)),
    "text": lambda event: _print(text_line(event)),
}
