"""``instrumentd bench change``: how late the daemon announces an instrument change, per hop and preset.

The audio is one fluidsynth render (FluidR3 GM) of solo phrases back to back, flute -> trumpet ->
piano -> violin -> ..., each about :data:`PHRASE_S` seconds (:func:`plan`), so every phrase boundary
is a change at a known time ``T``. For each setting the daemon itself (:class:`~instrumentd.daemon.server.Server`,
its worker, segmenter and event log) serves the render as ``file+fast`` and the logged events give:

* **audio delay**: ``t_end - T`` of the window whose event first carries the new instrument in
  ``labels`` (the same window opens its ``segment`` ``start``), in seconds of audio. A live daemon
  cannot publish that window before its last sample is heard, so this is the part of the delay that
  hop, window length, smoothing and thresholds set.
* **processing latency**: ``latency_ms`` (last sample received -> event published), measured in a
  second, real-time run (``file:``, paced) of the first change of each setting (half-length
  phrases with ``--quick``).

What a performer experiences is their sum (``delay`` columns). A change never announced before the
next phrase counts as missed; p50/p95 are over the announced ones. ``spurious`` counts segment
starts of an instrument that plays nowhere in the audio of their window: the price of a low
threshold or short smoothing.
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

from . import BenchResult

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


@dataclasses.dataclass(frozen=True)
class Phrase:
    """One solo phrase: ``cls`` plays from ``start`` to ``end`` seconds of the render."""

    cls: str
    start: float
    end: float


def settings() -> list[Setting]:
    out = [Setting(f"hop-{h}", {"hop_s": h}) for h in HOPS]
    return out + [Setting(f"preset-{p}", {"preset": p}) for p in PRESETS]


def plan(order: tuple[str, ...], phrase_s: float) -> list[Phrase]:
    """Back-to-back phrases of ``phrase_s`` +- 0.5 s (golden-ratio steps), so that the changes fall at
    every phase of any hop's window grid rather than always on it."""
    out, t = [], 0.0
    for i, cls in enumerate(order):
        end = round(t + phrase_s + (i * 0.618034) % 1 - 0.5, 3)
        out.append(Phrase(cls, t, end))
        t = end
    return out


def phrase_tracks(phrases: list[Phrase], seed: int = 0) -> list:
    """One :class:`~instrumentd.training.midi.Track` per phrase: a scale-wise melody of 0.25-0.5 s notes
    in the class's middle register (the piano over a fifth, as a pianist's right hand might play it)."""
    from instrumentd.training.midi import Note, Track
    from instrumentd.training.synth import PROGRAMS, RANGES

    rng = np.random.default_rng(seed)
    channels = [c for c in range(16) if c != 9]  # channel 10 is General MIDI's drum kit
    tracks = []
    for i, ph in enumerate(phrases):
        lo, hi = RANGES[ph.cls]
        mid = (lo + hi) // 2
        scale = [p for p in range(mid - 7, mid + 8) if p % 12 in (0, 2, 4, 5, 7, 9, 11)]
        notes, t, k = [], ph.start, len(scale) // 2
        while t < ph.end - 0.2:
            dur = float(rng.choice([0.25, 0.375, 0.5]))
            k = int(np.clip(k + rng.integers(-2, 3), 0, len(scale) - 1))
            for p in ([scale[k], scale[k] - 7] if ph.cls == "pia" else [scale[k]]):
                notes.append(Note(p, t, min(dur * 0.95, ph.end - t), 90))
            t += dur
        tracks.append(Track(PROGRAMS[ph.cls][0], channels[i % len(channels)], notes, 100, ph.start))
    return tracks


def render_phrases(phrases: list[Phrase], path: Path) -> None:
    """Render ``phrases`` with FluidR3 GM to ``path`` (16-bit WAV, 44.1 kHz)."""
    import soundfile

    from instrumentd.training.render import render

    audio = render(phrase_tracks(phrases), "fluidr3", phrases[-1].end, SR)
    soundfile.write(path, audio, SR, subtype="PCM_16")


def serve_file(spec: str, fields: dict[str, Any], device: str, log_dir: Path) -> list[dict]:
    """Run the daemon on one source until it ends; returns the stream's logged events in seq order.

    The daemon runs in a thread of its own, so that it leaves this process's signal handlers alone.
    """
    from instrumentd.daemon.config import load_config
    from instrumentd.daemon.server import Server

    cfg = load_config(env={}, sources=[f"s={spec}"], pub=f"inproc://bench-change-{log_dir.name}", replay="",
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


def announced(events: list[dict], phrases: list[Phrase]) -> list[dict | None]:
    """For each change (each phrase but the first), the first window event that ends inside the new
    phrase and carries its class in ``labels``; None where the phrase ended first (missed)."""
    windows = [e for e in events if e["type"] == "window"]
    return [next((w for w in windows if ph.start < w["t_end"] <= ph.end and ph.cls in w["labels"]), None)
            for ph in phrases[1:]]


def spurious(events: list[dict], phrases: list[Phrase]) -> int:
    """Segment starts of an instrument that plays nowhere in the 3 s its window heard."""
    count = 0
    for e in events:
        if e["type"] == "segment" and e["state"] == "start":
            heard = {ph.cls for ph in phrases if ph.start < e["start"] + 3.0 and ph.end > e["start"]}
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


    phrases = plan(ORDER[:5] if quick else ORDER, PHRASE_S)
    rows, summary = [], {}
    with tempfile.TemporaryDirectory(prefix="instrumentd-bench-change-") as tmp:
        tmp = Path(tmp)
        audio, first = tmp / "changes.wav", tmp / "first-change.wav"
        render_phrases(phrases, audio)
        render_phrases(plan(ORDER[:2], PHRASE_S / 2) if quick else phrases[:2], first)
        for s in track(settings(), description="settings", transient=True):
            fast = serve_file(f"file+fast:{audio}", s.fields, str(device), tmp / f"{s.name}-fast")
            hits = announced(fast, phrases)
            audio_delays = [w["t_end"] - ph.start for w, ph in zip(hits, phrases[1:]) if w is not None]
            paced = serve_file(f"file:{first}", s.fields, str(device), tmp / f"{s.name}-paced")
            lat50, lat95 = percentiles([e["latency_ms"] / 1000 for e in paced if e["type"] == "window"])
            a50, a95 = percentiles(audio_delays)
            row = {
                "setting": s.name, "changes": len(phrases) - 1, "missed": len(phrases) - 1 - len(audio_delays),
                "spurious": spurious(fast, phrases),
                "audio p50 s": a50, "audio p95 s": a95,
                "latency p50 ms": None if lat50 is None else round(lat50 * 1000, 1),
                "delay p50 s": None if a50 is None else round(a50 + lat50, 3),
                "delay p95 s": None if a95 is None else round(a95 + lat95, 3),
            }
            rows.append(row)
            summary[s.name] = {k: v for k, v in row.items() if k != "setting"}
    summary["phrases"] = [dataclasses.asdict(ph) for ph in phrases]
    return BenchResult("Change-detection delay (change in the audio -> its event)", rows, summary)
