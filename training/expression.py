"""Expressive playing for generated melodies: accents, phrase dynamics, loose timing, slurs, slides and vibrato.

A melody from :func:`synth._melody` is quantised and played at one level; :func:`perform` turns it
into a performance, in steps that are usable alone:

1. :func:`accent` - velocity boosts on a beat grid (every beat, every two, or every bar);
2. :func:`dynamics` - a phrase envelope of expression levels (crescendi, diminuendi, hairpins),
   sent as controller 11 to sustained instruments and folded into the velocities of struck and
   plucked ones, which cannot swell a held note;
3. :func:`humanise` - onsets moved by a few milliseconds, chords together;
4. :func:`legato` - some notes of sustained, monophonic parts held into the next one (slurred);
5. :func:`portamento` - some of those slurs sung or bowed as slides (controller 65 around the onset;
   fluidsynth glides between overlapping notes only, timidity plays them as plain slurs);
6. :func:`vibrato` - a pitch-bend LFO on long notes of the sustained, monophonic classes, starting a
   little after the onset, with its own rate and depth on every note.

Velocity jitter is already drawn by the composer (``_melody``), so none is added here. Every draw
comes from the generator passed in, so a stem's performance is fixed by its seed.
"""

from __future__ import annotations

import numpy as np

from .midi import PITCH_BEND, Control, Note

__all__ = ["VIBRATO_CLASSES", "accent", "dynamics", "expression_events", "humanise", "legato", "perform",
           "portamento", "slide_controls", "vibrato", "vibrato_bends"]

EXPRESSION = 11  # MIDI controller: expression, a fraction of the channel volume
VIBRATO_CLASSES = frozenset({"cel", "cla", "flu", "sax", "tru", "vio", "voi"})  # sustained, monophonic
STRUCK_CLASSES = frozenset({"gac", "gel", "pia"})  # dynamics by velocity: a held note cannot swell
PORTAMENTO_CLASSES = frozenset({"cel", "sax", "tru", "vio", "voi"})  # slides are idiomatic
PORTAMENTO_ON, PORTAMENTO_TIME_MSB, PORTAMENTO_TIME_LSB = 65, 5, 37  # MIDI controllers
LEGATO_GAP_S = 0.1  # notes closer than this, seconds, may be slurred
LEGATO_OVERLAP_S = 0.03  # a slurred note is held this long into the next, seconds
LEGATO_SHARE = (0.0, 0.8)  # a stem's share of slurred transitions
SLIDING_STEMS = 0.5  # share of the stems of PORTAMENTO_CLASSES that slide at all
SLIDE_SHARE = 0.3  # share of a sliding stem's slurs played as slides
SLIDE_MS = (40, 150)  # portamento time, milliseconds (fluidsynth: 14-bit controller 5/37 in ms)
VIBRATO_MIN_NOTE_S = 0.3  # notes shorter than this, seconds, are played straight
VIBRATO_DELAY_S = (0.15, 0.4)  # onset of the vibrato after the note's start, seconds
VIBRATO_FADE_S = 0.2  # the depth grows from 0 over this time, seconds
VIBRATO_HZ = (4.5, 7.0)
VIBRATO_CENTS = (10.0, 40.0)  # peak deviation from the note's pitch (half the peak-to-peak swing)
BEND_EVENTS_HZ = 60  # pitch-bend messages per second during a vibrato
EXPRESSION_EVENTS_HZ = 20  # controller-11 updates per second at most (only changes are sent)
EXPRESSION_LEVELS = (60, 127)  # controller-11 range of the phrase envelope
PHRASE_S = (1.0, 3.0)  # length of one crescendo, diminuendo or hairpin, seconds
ACCENT_PERIODS = (None, 1, 2, 4)  # accents every n beats (None: no accents)
ACCENT_VELOCITY = (8, 20)  # added to an accented note's velocity
ACCENT_TOLERANCE_S = 0.03  # an onset this close to a grid line is on the beat, seconds
TIMING_SD_MS = (5.0, 12.0)  # a stem's onset looseness: standard deviation, milliseconds
TIMING_MAX_MS = 20.0  # no onset moves further than this, milliseconds


def accent(rng: np.random.Generator, notes: list[Note], beat: float) -> list[Note]:
    """``notes`` with louder onsets on a beat grid drawn for the stem.

    The grid starts at the first onset and has a period of 1, 2 or 4 ``beat`` (seconds) or none;
    about two thirds of the notes on it gain ``ACCENT_VELOCITY`` (chord notes together).
    """
    period = ACCENT_PERIODS[int(rng.integers(0, len(ACCENT_PERIODS)))]
    if period is None or not notes:
        return list(notes)
    origin, grid = min(n.start for n in notes), period * beat
    boosts: dict[float, int] = {}
    for start in sorted({n.start for n in notes}):
        phase = (start - origin) % grid
        if min(phase, grid - phase) < ACCENT_TOLERANCE_S and rng.random() < 0.67:
            boosts[start] = int(rng.integers(ACCENT_VELOCITY[0], ACCENT_VELOCITY[1] + 1))
    return [Note(n.pitch, n.start, n.duration, min(127, n.velocity + boosts.get(n.start, 0))) for n in notes]


def _envelope(rng: np.random.Generator, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    """Phrase envelope: breakpoint ``times`` (seconds) and controller-11 ``levels``, piecewise linear.

    Phrases of ``PHRASE_S`` seconds each move from the level where the last one ended to a new level;
    one in three rises to a peak and falls back (a hairpin).
    """
    lo, hi = EXPRESSION_LEVELS
    times, levels = [start], [float(rng.uniform(lo, hi))]
    t = start
    while t < end:
        length = float(rng.uniform(*PHRASE_S))
        if rng.random() < 1 / 3:
            times.append(t + length / 2)
            levels.append(float(rng.uniform(max(levels[-1], lo + 0.5 * (hi - lo)), hi)))
        t += length
        times.append(t)
        levels.append(float(rng.uniform(lo, hi)))
    return np.array(times), np.array(levels)


def dynamics(rng: np.random.Generator, notes: list[Note], start: float, end: float,
             struck: bool) -> tuple[list[Note], list[Control]]:
    """A phrase envelope over ``[start, end]`` seconds (levels in ``EXPRESSION_LEVELS``).

    Returns ``(notes, controls)``: for sustained instruments the notes unchanged and controller-11
    events (at most ``EXPRESSION_EVENTS_HZ`` a second, only when the level changes); for ``struck``
    ones no controls and every velocity scaled by ``sqrt(level / 127)`` at its onset.
    """
    times, levels = _envelope(rng, start, end)
    if struck:
        gain = np.sqrt(np.interp([n.start for n in notes], times, levels) / 127.0)
        return [Note(n.pitch, n.start, n.duration, int(np.clip(round(n.velocity * g), 1, 127)))
                for n, g in zip(notes, gain)], []
    return list(notes), expression_events(times, levels, start, end)


def expression_events(times: np.ndarray, levels: np.ndarray, start: float, end: float) -> list[Control]:
    """Controller-11 events from ``start`` to ``end`` seconds following the piecewise-linear envelope
    ``levels[k]`` (0-127) at ``times[k]`` (seconds): ``EXPRESSION_EVENTS_HZ`` a second at most, only
    where the level changes."""
    controls: list[Control] = []
    for t in np.arange(start, end, 1.0 / EXPRESSION_EVENTS_HZ):
        value = int(np.clip(round(float(np.interp(t, times, levels))), 0, 127))
        if not controls or controls[-1].value != value:
            controls.append(Control(float(t), EXPRESSION, value))
    return controls


def humanise(rng: np.random.Generator, notes: list[Note], start: float, end: float) -> list[Note]:
    """``notes`` moved in time, whole (onset and release), by a normal draw of a stem-wide
    ``TIMING_SD_MS`` spread, cut at ``TIMING_MAX_MS``; notes of one onset move together. Notes stay
    within ``[start, end]`` seconds."""
    sd = float(rng.uniform(*TIMING_SD_MS)) / 1000.0
    cap = TIMING_MAX_MS / 1000.0
    shift = {t: float(np.clip(rng.normal(0.0, sd), -cap, cap)) for t in sorted({n.start for n in notes})}
    out = []
    for n in notes:
        t = min(max(start, n.start + shift[n.start]), end)
        duration = min(n.duration, end - t)
        if duration > 0:
            out.append(Note(n.pitch, t, duration, n.velocity))
    return out


def legato(rng: np.random.Generator, notes: list[Note]) -> tuple[list[Note], list[float]]:
    """Slurs in a monophonic part: a share (``LEGATO_SHARE``, drawn for the stem) of the notes followed
    within ``LEGATO_GAP_S`` by another are held ``LEGATO_OVERLAP_S`` into it (never past the next
    note's end). Returns ``(notes, slurred)``: the notes, and the onsets (seconds) reached by a slur."""
    share = float(rng.uniform(*LEGATO_SHARE))
    notes = sorted(notes, key=lambda n: n.start)
    out, slurred = [], []
    for n, after in zip(notes, notes[1:] + [None]):
        if after is not None and after.start > n.start and after.start - (n.start + n.duration) < LEGATO_GAP_S \
                and rng.random() < share:
            end = min(after.start + LEGATO_OVERLAP_S, after.start + after.duration)
            n = Note(n.pitch, n.start, max(n.duration, end - n.start), n.velocity)
            slurred.append(after.start)
        out.append(n)
    return out, slurred


def slide_controls(onset: float, slide_ms: int) -> list[Control]:
    """Controller events making the note that starts at ``onset`` seconds, slurred from the one
    before, glide to its pitch over ``slide_ms`` milliseconds: portamento time, portamento on just
    before the onset, off once the glide is over."""
    return [Control(onset - 0.005, PORTAMENTO_TIME_MSB, (slide_ms >> 7) & 0x7F),
            Control(onset - 0.005, PORTAMENTO_TIME_LSB, slide_ms & 0x7F),
            Control(onset - 0.005, PORTAMENTO_ON, 127),
            Control(onset + slide_ms / 1000.0, PORTAMENTO_ON, 0)]


def portamento(rng: np.random.Generator, slurred: list[float]) -> list[Control]:
    """Slides on about ``SLIDE_SHARE`` of the ``slurred`` onsets (seconds), each of its own
    ``SLIDE_MS`` time (see :func:`slide_controls`)."""
    controls: list[Control] = []
    for onset in slurred:
        if rng.random() < SLIDE_SHARE:
            controls += slide_controls(onset, int(rng.integers(SLIDE_MS[0], SLIDE_MS[1] + 1)))
    return controls


def vibrato_bends(start: float, stop: float, rate_hz: float, cents: float, bend_range: int = 2) -> list[Control]:
    """Pitch-bend events for one vibrato from ``start`` to ``stop`` seconds: a sine of ``rate_hz``
    and ``cents`` peak deviation, starting at its centre, its depth growing over ``VIBRATO_FADE_S``;
    ``BEND_EVENTS_HZ`` events a second, then a centred bend at ``stop``. ``bend_range``: semitones of
    a full bend (the track's)."""
    t = np.arange(start, stop, 1.0 / BEND_EVENTS_HZ)
    depth = cents * np.minimum(1.0, (t - start) / VIBRATO_FADE_S)
    values = np.round(depth * np.sin(2 * np.pi * rate_hz * (t - start)) / (100.0 * bend_range) * 8192)
    return [Control(float(ti), PITCH_BEND, int(v)) for ti, v in zip(t, values)] + [Control(stop, PITCH_BEND, 0)]


def vibrato(rng: np.random.Generator, notes: list[Note], bend_range: int = 2) -> list[Control]:
    """Pitch-bend events giving every note longer than ``VIBRATO_MIN_NOTE_S`` a vibrato of its own
    rate (``VIBRATO_HZ``), depth (``VIBRATO_CENTS``) and onset (``VIBRATO_DELAY_S`` after its start).

    A vibrato stops, centred, at its note's end or at the next onset, whichever comes first, so every
    note starts at its own pitch. A bend moves the whole channel: meant for monophonic parts.
    """
    onsets = sorted({n.start for n in notes})
    controls: list[Control] = []
    for n in sorted(notes, key=lambda n: n.start):
        if n.duration <= VIBRATO_MIN_NOTE_S:
            continue
        rate, cents = float(rng.uniform(*VIBRATO_HZ)), float(rng.uniform(*VIBRATO_CENTS))
        begin = n.start + float(rng.uniform(*VIBRATO_DELAY_S))
        stop = min([n.start + n.duration] + [t for t in onsets if t > n.start])
        if stop - begin >= 1.0 / rate:  # at least one cycle
            controls += vibrato_bends(begin, stop, rate, cents, bend_range)
    return controls


def perform(rng: np.random.Generator, cls: str, notes: list[Note], beat: float, start: float, end: float,
            bend_range: int = 2, with_vibrato: bool = True) -> tuple[list[Note], list[Control]]:
    """A performance of a class ``cls`` melody between ``start`` and ``end`` seconds (``beat``:
    seconds per beat): accents, dynamics, humanised timing; slurs and vibrato for
    :data:`VIBRATO_CLASSES` (without ``with_vibrato``, the same performance played straight: its
    vibratos are drawn and left out), slides for :data:`PORTAMENTO_CLASSES`. Returns ``(notes,
    controls)`` for a :class:`midi.Track`."""
    notes = accent(rng, notes, beat)
    notes, controls = dynamics(rng, notes, start, end, struck=cls in STRUCK_CLASSES)
    notes = humanise(rng, notes, start, end)
    if cls in VIBRATO_CLASSES:
        notes, slurred = legato(rng, notes)
        if cls in PORTAMENTO_CLASSES and rng.random() < SLIDING_STEMS:
            controls += portamento(rng, slurred)
        bends = vibrato(rng, notes, bend_range)
        controls += bends if with_vibrato else []
    return notes, controls
