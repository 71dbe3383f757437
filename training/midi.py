"""Standard MIDI files from note lists: just enough of the format for fluidsynth renders."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

TICKS_PER_QUARTER = 480
DRUM_CHANNEL = 9
PITCH_BEND = -1  # Control.number of a pitch-bend event


@dataclasses.dataclass(frozen=True)
class Note:
    """One note: MIDI ``pitch`` 0-127, ``start`` and ``duration`` in seconds, ``velocity`` 1-127."""

    pitch: int
    start: float
    duration: float
    velocity: int = 100


@dataclasses.dataclass(frozen=True)
class Control:
    """A controller change at ``time`` seconds: ``number`` 0-127 with ``value`` 0-127, or
    ``number=PITCH_BEND`` with ``value`` -8192..8191 (a full bend is ``Track.bend_range`` semitones).
    """

    time: float
    number: int
    value: int


@dataclasses.dataclass
class Track:
    """Notes played by one General MIDI ``program`` (0-127) on one ``channel`` (9 = drums).

    The channel is set up (volume, bank, program) at ``start`` seconds; a track starting later than 0
    first silences what the channel still sounds and resets its controllers, so one file can hold
    clips one after another. ``controls`` (expression, modulation, pitch bends...) are sent before
    notes that start at the same time.
    """

    program: int
    channel: int
    notes: list[Note]
    volume: int = 100  # controller 7, 0-127
    start: float = 0.0  # seconds
    bank: int = 0  # bank select (controller 0), for variation sounds
    controls: list[Control] = dataclasses.field(default_factory=list)
    bend_range: int = 2  # semitones of a full pitch bend (RPN 0)
    vibrato: bool = True  # a sampler plays its notes with a vibrato (sustained classes); False: straight


def _vlq(n: int) -> bytes:
    """MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def to_bytes(tracks: list[Track], tempo_bpm: float = 120.0) -> bytes:
    """A format-0 MIDI file holding ``tracks``; times are converted at ``tempo_bpm``."""
    ticks_per_second = TICKS_PER_QUARTER * tempo_bpm / 60.0
    events: list[tuple[int, int, bytes]] = [(0, 0, b"\xff\x51\x03" + int(60e6 / tempo_bpm).to_bytes(3, "big"))]
    for tr in tracks:
        ch = tr.channel & 0x0F
        setup = int(round(tr.start * ticks_per_second))
        if setup > 0:
            events.append((setup, 1, bytes([0xB0 | ch, 120, 0])))  # all sound off
        if setup > 0 or tr.controls:
            events.append((setup, 1, bytes([0xB0 | ch, 121, 0])))  # reset all controllers
            events.append((setup, 1, bytes([0xE0 | ch, 0, 0x40])))  # pitch bend centred
        if tr.controls:  # RPN 0: pitch-bend range in semitones, then RPN null
            events += [(setup, 1, bytes([0xB0 | ch, c, v])) for c, v in
                       ((101, 0), (100, 0), (6, tr.bend_range & 0x7F), (38, 0), (101, 127), (100, 127))]
        events.append((setup, 1, bytes([0xB0 | ch, 7, tr.volume & 0x7F])))
        if tr.bank:
            events.append((setup, 1, bytes([0xB0 | ch, 0, tr.bank & 0x7F])))
        if ch != DRUM_CHANNEL:
            events.append((setup, 1, bytes([0xC0 | ch, tr.program & 0x7F])))
        for c in tr.controls:
            tick = max(setup, int(round(c.time * ticks_per_second)))
            if c.number == PITCH_BEND:
                v = max(0, min(16383, c.value + 8192))
                events.append((tick, 1, bytes([0xE0 | ch, v & 0x7F, v >> 7])))
            else:
                events.append((tick, 1, bytes([0xB0 | ch, c.number & 0x7F, max(0, min(127, c.value))])))
        for n in tr.notes:
            on = int(round(n.start * ticks_per_second))
            off = max(on + 1, int(round((n.start + n.duration) * ticks_per_second)))
            # at equal ticks, note-offs (order 2) sort before note-ons (order 3) so repeated pitches retrigger
            events.append((on, 3, bytes([0x90 | ch, n.pitch & 0x7F, max(1, min(127, n.velocity))])))
            events.append((off, 2, bytes([0x80 | ch, n.pitch & 0x7F, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    body = bytearray()
    last = 0
    for tick, _, data in events:
        body += _vlq(tick - last) + data
        last = tick
    body += _vlq(0) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_QUARTER)
    return header + b"MTrk" + struct.pack(">I", len(body)) + bytes(body)


def write(path: str | Path, tracks: list[Track], tempo_bpm: float = 120.0) -> None:
    Path(path).write_bytes(to_bytes(tracks, tempo_bpm))
