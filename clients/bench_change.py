"""``instrumentd bench change``: how late the daemon announces an instrument change, per hop and preset.

The audio is one fluidsynth render (FluidR3 GM) of solo phrases back to back, flute -> trumpet ->
piano -> violin -> ..., each :data:`PHRASE_S` seconds, so every phrase boundary is a change at a
known time ``T``. For each setting the daemon itself (:class:`~instrumentd.daemon.server.Server`,
its worker, segmenter and event log) serves the render as ``file+fast`` and the logged events give:

* **audio delay**: ``t_end - T`` of the window whose event first carries the new instrument in
  ``labels`` (the same window opens its ``segment`` ``start``), in seconds of audio. A live daemon
  cannot publish that window before its last sample is heard, so this is the part of the delay that
  hop, window length, smoothing and thresholds set.
* **processing latency**: ``latency_ms`` (last sample received -> event published), measured in a
  second, real-time run (``file:``, paced) of the first change of each setting.

What a performer experiences is their sum (``delay`` columns). A change never announced before the
next phrase counts as missed; p50/p95 are over the announced ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

SR = 44100
PHRASE_S = 8.0  # seconds of each solo phrase
ORDER = ("flu", "tru", "pia", "vio", "cla", "cel", "flu", "pia", "tru", "vio", "cel", "cla", "flu")
HOPS = (1.0, 0.5, 0.25, 0.1)  # seconds, with the default smoothing
PRESETS = ("live",)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One row of the bench: a name and the Config fields it sets."""

    name: str
    fields: dict[str, Any]


def settings() -> list[Setting]:
    out = [Setting(f"hop-{h}", {"hop": h}) for h in HOPS]
    return out + [Setting(f"preset-{p}", {"preset": p}) for p in PRESETS]


def phrase_tracks(order: tuple[str, ...], phrase_s: float, seed: int = 0) -> list:
    """One :class:`~instrumentd.training.midi.Track` per phrase: a scale-wise melody in the class's
    middle register, 0.25-0.5 s notes, starting at ``i * phrase_s`` seconds."""
    from instrumentd.training.midi import Note, Track
    from instrumentd.training.synth import PROGRAMS, RANGES

    rng = np.random.default_rng(seed)
    channels = [c for c in range(16) if c != 9]  # channel 10 is General MIDI's drum kit
    tracks = []
    for i, cls in enumerate(order):
        lo, hi = RANGES[cls]
        mid = (lo + hi) // 2
        scale = [p for p in range(mid - 7, mid + 8) if p % 12 in (0, 2, 4, 5, 7, 9, 11)]
        notes, t, k = [], 0.0, len(scale) // 2
        while t < phrase_s - 0.3:
            dur = float(rng.choice([0.25, 0.375, 0.5]))
            k = int(np.clip(k + rng.integers(-2, 3), 0, len(scale) - 1))
            chord = cls == "pia"  # the piano plays its melody over a fifth, as a pianist's right hand might
            for p in ([scale[k], scale[k] - 7] if chord else [scale[k]]):
                notes.append(Note(p, i * phrase_s + t, min(dur * 0.95, phrase_s - t), 90))
            t += dur
        tracks.append(Track(PROGRAMS[cls][0], channels[i % len(channels)], notes, 100, i * phrase_s))
    return tracks


def render_changes(order: tuple[str, ...], phrase_s: float, path: Path) -> list[tuple[float, str]]:
    """Write the phrases to ``path`` (16-bit WAV, 44.1 kHz); returns the changes ``[(T seconds, new class)]``."""
    import soundfile

    from instrumentd.training.render import render

    audio = render(phrase_tracks(order, phrase_s), "fluidr3", phrase_s * len(order), SR)
    soundfile.write(path, audio, SR, subtype="PCM_16")
    return [(i * phrase_s, cls) for i, cls in enumerate(order) if i > 0]


def serve_file(spec: str, fields: dict[str, Any], device: str, log_dir: Path) -> list[dict]:
    """Run the daemon on one source until it ends; returns the stream's logged events in seq order.

    The daemon runs in a thread of its own, so that it leaves this process's signal handlers alone.
    """
    from instrumentd.daemon.config import load
    from instrumentd.daemon.server import Server

    cfg = load(env={}, sources=[f"s={spec}"], pub=f"inproc://bench-change-{log_dir.name}", replay="",
               log_dir=str(log_dir), device=device, heartbeat=60.0, **fields)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            Server(cfg).run()
        except BaseException as exc:  # re-raised in the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name="bench-change-daemon")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    events = [json.loads(line) for p in sorted((log_dir / "s").glob("*.jsonl")) for line in p.read_text().splitlines()]
    return sorted(events, key=lambda e: e["seq"])


def announced(events: list[dict], changes: list[tuple[float, str]], phrase_s: float) -> list[dict | None]:
    """For each change, the first window event after ``T`` whose labels hold the new class (None if missed)."""
    windows = [e for e in events if e["type"] == "window"]
    out = []
    for t, cls in changes:
        hit = next((w for w in windows if t < w["t_end"] <= t + phrase_s and cls in w["labels"]), None)
        out.append(hit)
    return out


def spurious(events: list[dict], order: tuple[str, ...], phrase_s: float) -> int:
    """Segment starts of an instrument that plays in none of the audio its window heard."""
    count = 0
    for e in events:
        if e["type"] == "segment" and e["state"] == "start":
            heard = {order[min(int(t // phrase_s), len(order) - 1)] for t in (e["start"], e["start"] + 2.99)}
            count += e["instrument"] not in heard
    return count


def percentiles(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    p50, p95 = np.percentile(values, [50, 95])
    return round(float(p50), 3), round(float(p95), 3)


def change(device, quick: bool, args: argparse.Namespace):
    """Change-detection delay per hop and preset (see the module docstring)."""
    from rich.progress import track

    from instrumentd.clients.bench import BenchResult

    order = ORDER[:5] if quick else ORDER
    rows, summary = [], {}
    with tempfile.TemporaryDirectory(prefix="instrumentd-bench-change-") as tmp:
        tmp = Path(tmp)
        audio = tmp / "changes.wav"
        changes = render_changes(order, PHRASE_S, audio)
        first = tmp / "first-change.wav"
        render_changes(order[:2], PHRASE_S, first)
        for s in track(settings(), description="settings", transient=True):
            fast = serve_file(f"file+fast:{audio}", s.fields, str(device), tmp / f"{s.name}-fast")
            hits = announced(fast, changes, PHRASE_S)
            audio_delays = [w["t_end"] - t for w, (t, _) in zip(hits, changes) if w is not None]
            paced = serve_file(f"file:{first}", s.fields, str(device), tmp / f"{s.name}-paced")
            latency = [e["latency_ms"] / 1000 for e in paced if e["type"] == "window"]
            lat50, lat95 = percentiles(latency)
            a50, a95 = percentiles(audio_delays)
            row = {
                "setting": s.name, "changes": len(changes), "missed": len(changes) - len(audio_delays),
                "audio delay p50 s": a50, "audio delay p95 s": a95,
                "latency_ms p50": None if lat50 is None else round(lat50 * 1000, 1),
                "delay p50 s": None if a50 is None else round(a50 + lat50, 3),
                "delay p95 s": None if a95 is None else round(a95 + lat95, 3),
            }
            rows.append(row)
            summary[s.name] = {k: v for k, v in row.items() if k != "setting"}
    summary["phrase_s"] = PHRASE_S
    summary["order"] = list(order)
    return BenchResult("Change-detection delay (change in the audio -> its event)", rows, summary)
