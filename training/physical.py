"""Rendering MIDI tracks with the physical models of the Synthesis ToolKit (STK): its ``stk-demo``
program plays a SKINI score with one instrument model (a bowed string, a reed, a jet, an FM organ)
and writes a WAV file. Its trumpet (``Brass``) is left out: at its default lip tension it is silent
below C#5.

A bowed string model is not a recording, but it is not a sample of a General MIDI preset either:
its bow pressure and position, like a reed's stiffness or a flute's jet, are drawn per stem, so the
same note comes out in many timbres. Each track is rendered with one ``stk-demo`` run (about
0.05 s for 4 s of audio) and the runs are summed. The reeds' and the flute's breath noise is seeded
by STK from the clock, so their renders differ slightly from run to run (the notes, timbres and
expression do not).

SKINI, as ``stk-demo`` reads it: one message a line, ``Type DeltaSeconds Channel Data1 Data2``;
``ControlChange`` numbers are the instrument's own (:data:`TIMBRE`), 128 (``AfterTouch``) is the
instrument's breath pressure or bow speed, 44 the demo's reverb mix (kept at 0: rooms are added when
training), and ``PitchBend`` takes 0-16384 with 8192 at rest and a full octave at either end.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from .expression import EXPRESSION
from .midi import PITCH_BEND, Track
from .render import RenderError, run_to_wav

EXECUTABLE = "stk-demo"  # Debian: apt-get install stk
INSTRUMENTS: dict[int, str] = {  # General MIDI program -> STK instrument
    16: "BeeThree", 17: "BeeThree", 18: "BeeThree", 19: "BeeThree",  # organs: a Hammond B3 in FM
    40: "Bowed", 42: "Bowed",  # violin, cello: a bowed string
    64: "Saxofony", 65: "Saxofony", 66: "Saxofony", 67: "Saxofony",
    71: "Clarinet",
    73: "Flute",
}
TIMBRE: dict[str, dict[int, tuple[float, float]]] = {  # instrument -> {controller: range drawn per track}
    "Bowed": {2: (30.0, 100.0), 4: (10.0, 70.0), 1: (0.0, 0.0)},  # bow pressure, bow position, no own vibrato
    "Clarinet": {2: (40.0, 100.0), 4: (5.0, 40.0), 1: (0.0, 0.0)},  # reed stiffness, noise, no own vibrato
    "Flute": {2: (40.0, 80.0), 4: (10.0, 50.0), 1: (0.0, 0.0)},  # jet delay, noise, no own vibrato
    "Saxofony": {2: (30.0, 90.0), 26: (30.0, 90.0), 11: (10.0, 60.0), 4: (5.0, 30.0), 1: (0.0, 0.0)},
    "BeeThree": {11: (20.0, 80.0), 1: (0.0, 30.0)},  # the rotating speaker's speed and depth
}
PRESSURE = 128  # STK: breath pressure, bow speed, volume
REVERB_MIX = 44  # stk-demo's own reverb
TIMBRE_DRAWS = 4  # timbres tried for a track before its render is given up as silent
AUDIBLE = 1e-3  # peak under which a render is silent (full scale 1)
BEND_CENTRE, BEND_OCTAVE = 8192.0, 8192.0  # stk-demo's pitch bend: 8192 at rest, +-8192 an octave


def installed() -> bool:
    return shutil.which(EXECUTABLE) is not None


def presets() -> frozenset[tuple[int, int]]:
    """The ``(bank, program)`` pairs it plays."""
    return frozenset((0, p) for p in INSTRUMENTS)


def skini(track: Track, rng: np.random.Generator) -> str:
    """The SKINI score of a track (delta times, seconds from the track's ``start``): its notes, its
    expression curve as pressure, its pitch bends at its ``bend_range``, and timbre controllers drawn
    from ``rng`` within :data:`TIMBRE`. Other controllers (portamento, volume) are left out."""
    instrument = INSTRUMENTS[track.program]
    events: list[tuple[float, int, str]] = [(0.0, 0, f"ControlChange {{}} 1 {REVERB_MIX} 0")]
    events += [(0.0, 0, f"ControlChange {{}} 1 {number} {rng.uniform(*span):.2f}")
               for number, span in TIMBRE[instrument].items()]
    for c in track.controls:
        t = max(0.0, c.time - track.start)
        if c.number == EXPRESSION:
            events.append((t, 1, f"ControlChange {{}} 1 {PRESSURE} {c.value:.2f}"))
        elif c.number == PITCH_BEND:
            semitones = c.value / 8192.0 * track.bend_range
            events.append((t, 1, f"PitchBend {{}} 1 {BEND_CENTRE + semitones / 12.0 * BEND_OCTAVE:.4f}"))
    for n in track.notes:
        t = max(0.0, n.start - track.start)
        events.append((t, 2, f"NoteOn {{}} 1 {n.pitch} {n.velocity}"))
        events.append((t + n.duration, 1, f"NoteOff {{}} 1 {n.pitch} 64"))
    events.sort(key=lambda e: (e[0], e[1]))
    lines, now = [], 0.0
    for t, _, text in events:
        lines.append(text.format(f"{t - now:.6f}"))
        now = t
    return "\n".join(lines) + "\n"


def render_stk(tracks: list[Track], seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Render ``tracks`` (programs of :data:`INSTRUMENTS`), each with its STK instrument and one
    voice, and sum them: ``float32 [round(seconds * sr)]`` mono, silence-padded or cut. A model that
    does not sound with the timbre drawn for it (a reed too stiff for its note) is drawn again, up to
    :data:`TIMBRE_DRAWS` times."""
    exe = shutil.which(EXECUTABLE)
    if exe is None:
        raise RenderError(f"{EXECUTABLE} not found on PATH (Debian: apt-get install stk)")
    n = int(round(seconds * sr))
    out = np.zeros(n, np.float32)
    with tempfile.TemporaryDirectory(prefix="instrumentd-stk-") as tmp:
        for track in tracks:
            if track.program not in INSTRUMENTS:
                raise RenderError(f"STK plays no instrument for General MIDI program {track.program}")
            for _ in range(TIMBRE_DRAWS):
                part = _run(exe, track, sr, rng, Path(tmp))
                if not track.notes or np.abs(part).max(initial=0.0) >= AUDIBLE:
                    break
            else:
                raise RenderError(f"{EXECUTABLE} {INSTRUMENTS[track.program]} stayed silent in {TIMBRE_DRAWS} timbres "
                                  f"(notes {sorted({note.pitch for note in track.notes})})")
            start = int(round(track.start * sr))
            part = part[: max(0, n - start)]
            out[start : start + len(part)] += part
    return out


def _run(exe: str, track: Track, sr: int, rng: np.random.Generator, tmp: Path) -> np.ndarray:
    """One ``stk-demo`` run of one track: ``float32 [samples]`` mono from the track's start."""
    score, wav = tmp / "in.ski", tmp / "out.wav"
    score.write_text(skini(track, rng))
    return run_to_wav(EXECUTABLE, [exe, INSTRUMENTS[track.program], "-n", "1", "-s", str(sr), "-ow", str(wav),
                                   "-if", str(score)], wav, sr)
