"""``instrumentd bridge mqtt|osc``: carry the daemons' events to an MQTT broker or to an OSC receiver.

A bridge is a client like ``tail``: it subscribes to one or more daemons (or a proxy), ZeroMQ
reconnects it by itself, and a restart of the bridge leaves the daemons alone. Each bridge module
(:data:`BRIDGES`) has a typed ``Settings`` dataclass (its flags are in
:mod:`instrumentd.clients.commands.bridge`) and ``open(settings)``, which returns a sink with
``handle(event)`` and ``close()``. Settings come from the defaults, then the ``[bridge.<kind>]``
table of ``--config FILE``, then the flags (:func:`load_settings`); :func:`carry` runs a bridge.
"""

from __future__ import annotations

import dataclasses
import importlib
import signal
import typing
from pathlib import Path
from typing import Any, Mapping

BRIDGES: dict[str, str] = {
    "mqtt": "instrumentd.clients.bridge_mqtt",
    "osc": "instrumentd.clients.bridge_osc",
}
POLL_S = 0.2  # seconds between looks at the stop flag while no event comes


@dataclasses.dataclass
class BridgeSettings:
    """What every bridge subscribes to: PUB endpoints (empty: the daemon's default) and streams (empty: all)."""

    connect: list[str] = dataclasses.field(default_factory=list)
    stream: list[str] = dataclasses.field(default_factory=list)


def load_settings(cls: type, config: str | None, flags: Mapping[str, Any], section: str) -> Any:
    """A ``cls`` dataclass from its defaults, the ``[section]`` table of the TOML file ``config`` (None:
    none) and ``flags`` (setting -> value; None = not given), in that order; a wrong key or type is a
    ParameterError naming it."""
    values: dict[str, Any] = {}
    if config:
        hints = typing.get_type_hints(cls)
        for key, value in _table(Path(config), section).items():
            name = key.replace("-", "_")
            if name not in hints:
                from instrumentd.pipeline.errors import ParameterError

                raise ParameterError(f"{config}: [{section}] has no setting {key!r} "
                                     f"(known: {', '.join(sorted(hints))})")
            values[name] = _typed(value, hints[name], f"{config}: [{section}] {key}")
    for f in dataclasses.fields(cls):
        given = flags.get(f.name)
        if given is not None:
            values[f.name] = given
    return cls(**values)


def _table(path: Path, section: str) -> dict[str, Any]:
    import tomllib

    from instrumentd.pipeline.errors import ParameterError

    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ParameterError(f"--config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(f"--config {path}: not TOML ({exc})") from None
    for part in section.split("."):
        data = data.get(part, {})
        if not isinstance(data, dict):
            raise ParameterError(f"--config {path}: [{section}] must be a table")
    return data


def _typed(value: Any, hint: Any, where: str) -> Any:
    """``value`` from TOML if it fits ``hint`` (str, int, float, bool, an optional one, or list[str])."""
    from instrumentd.pipeline.errors import ParameterError

    if typing.get_origin(hint) is list:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ParameterError(f"{where} must be a list of strings, got {value!r}")
    allowed = tuple(t for t in (typing.get_args(hint) or (hint,)) if t is not type(None))
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        raise ParameterError(f"{where} must be {' or '.join(t.__name__ for t in allowed)}, got {value!r}")
    return value


def carry(kind: str, settings: Any) -> str:
    """Carry the events ``settings`` (the ``Settings`` of bridge ``kind``) subscribe to into that bridge's
    sink until SIGINT or SIGTERM; returns the sink's summary of what it carried."""
    from .subscribe import DEFAULT_CONNECT, Feed, Replayer, check_endpoint

    module = importlib.import_module(BRIDGES[kind])
    endpoints = [check_endpoint(e, "--connect") for e in settings.connect or [DEFAULT_CONNECT]]
    replay = [check_endpoint(e, "--replay") for e in getattr(settings, "replay", None) or []]
    sink = module.open(settings)
    feed = Feed(endpoints, module.TOPICS, settings.stream, Replayer(replay) if replay else None, f"bridge {kind}")
    stop = {"now": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["now"] = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop["now"]:
            for event in feed.next(POLL_S):
                sink.handle(event)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        feed.close()
        sink.close()
    return sink.summary()
