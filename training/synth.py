"""A synthetic corpus in the IRMAS layout, rendered from generated MIDI with fluidsynth.

Training clips are 3 s with one predominant class: a melody on one of that class's General MIDI
programs, loud, over an optional quieter accompaniment (chords and bass on other programs) and
optional drums. Test clips are 5-20 s with one to three predominant classes. Everything about a
clip (labels, programs, key, tempo, register, articulation, levels) is drawn from a random
generator seeded by ``(seed, split, class, number)``, so a corpus is the same on every machine
and growing ``per_class`` keeps the clips already drawn.

Layout written under ``OUT``::

    IRMAS-TrainingData/<cls>/[<cls>][dru|nod][<genre>]NNNN__1.wav
    IRMAS-TestingData-Part1/Part1/<soundfont>-NNNN.wav   (+ .txt: one label per line, tab-terminated)
    synth.csv                                            one row per clip: path, split, soundfont, ...

Test compositions are shared by the test soundfonts (``fluidr3-0007`` and ``musescore-0007`` are
the same music), so scores per soundfont compare like with like.
"""

from __future__ import annotations

import csv
import dataclasses
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from operator import attrgetter
from pathlib import Path
from typing import Callable, Protocol, TypeVar

import numpy as np
import soundfile

from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.config import SAMPLE_RATE
from instrumentd.pipeline.errors import ParameterError

from .midi import DRUM_CHANNEL, Note, Track
from .render import SOUNDFONTS, TEST_SOUNDFONTS, TRAINING_SOUNDFONTS, RenderError, find_soundfont, render

MANIFEST = "synth.csv"
TRAIN_DIR = "IRMAS-TrainingData"
TEST_DIR = "IRMAS-TestingData-Part1/Part1"
TRAIN_SECONDS = 3.0
TEST_SECONDS = (5.0, 20.0)
GAP_SECONDS = 2.0  # silence between clips rendered in one fluidsynth run: release tails die out
# fluidsynth's player counts whole milliseconds and starts events on 64-sample blocks; clips start
# on a common multiple (28,224 samples) with 1 ms MIDI ticks, so a clip renders the same wherever it lies
ALIGN_SECONDS = 0.64
MIDI_TEMPO = 125.0  # bpm: 480 ticks per beat -> 1,000 ticks per second
CLIPS_PER_RENDER = 24  # clips per fluidsynth run: loading a SoundFont costs up to 3 s
RENDER_GAIN = 0.3  # fluidsynth master gain: chords over drums stay below clipping

# General MIDI programs (0-based) for each class, and each class's playable range (MIDI notes)
PROGRAMS: dict[str, tuple[int, ...]] = {
    "cel": (42,),
    "cla": (71,),
    "flu": (73,),
    "gac": (24, 25),
    "gel": (26, 27, 28, 29, 30),
    "org": (16, 17, 18, 19),
    "pia": (0, 1),
    "sax": (64, 65, 66, 67),
    "tru": (56,),
    "vio": (40,),
    "voi": (52, 53),
}
RANGES: dict[str, tuple[int, int]] = {
    "cel": (36, 76),  # C2-E5
    "cla": (50, 89),  # D3-F6
    "flu": (60, 93),  # C4-A6
    "gac": (40, 81),  # E2-A5
    "gel": (40, 86),  # E2-D6
    "org": (36, 89),
    "pia": (36, 96),
    "tru": (54, 82),  # F#3-A#5
    "vio": (55, 96),  # G3-C7
    "voi": (43, 79),  # G2-G5, bass to soprano
}
SAX_RANGES = {64: (56, 87), 65: (49, 80), 66: (44, 75), 67: (37, 68)}  # soprano, alto, tenor, baritone
POLYPHONIC = ("gac", "gel", "org", "pia")  # may play chords in their melody
ACCOMPANIMENT = ("cel", "gac", "gel", "org", "pia", "vio", "voi")  # classes that may accompany
BASS_PROGRAMS = (32, 33, 34)  # acoustic, finger and picked bass: no class of their own
GENRES = {  # IRMAS genre tags -> tempo range (bpm), chance of drums
    "cla": ((60, 140), 0.1),
    "jaz_blu": ((80, 200), 0.5),
    "pop_roc": ((90, 160), 0.7),
    "cou_fol": ((80, 140), 0.4),
    "lat_sou": ((90, 180), 0.6),
}
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "blues": (0, 3, 5, 6, 7, 10),
}
ARTICULATIONS = {"legato": (0.95, 1.0), "normal": (0.75, 0.9), "staccato": (0.3, 0.5)}


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """One clip to render: where it goes, what it is labelled, which SoundFont plays it.

    ``key`` seeds the composition; equal keys give equal music whatever the SoundFont.
    """

    path: str  # relative to the corpus root
    split: str  # "train" or "test"
    soundfont: str
    labels: tuple[str, ...]
    seconds: float
    genre: str
    drums: bool
    key: tuple[int, ...]


def _rng(key: tuple[int, ...]) -> np.random.Generator:
    return np.random.default_rng(list(key))


def _train_spec(seed: int, class_index: int, number: int, soundfont: str) -> ClipSpec:
    key = (seed, 0, class_index, number)
    rng = _rng(key + (0,))
    genre = str(rng.choice(list(GENRES)))
    drums = bool(rng.random() < GENRES[genre][1])
    cls = CLASSES[class_index]
    name = f"[{cls}][{'dru' if drums else 'nod'}][{genre}]{number + 1:04d}__1.wav"
    return ClipSpec(f"{TRAIN_DIR}/{cls}/{name}", "train", soundfont, (cls,), TRAIN_SECONDS, genre, drums, key)


def _test_spec(seed: int, number: int, soundfont: str) -> ClipSpec:
    key = (seed, 1, number)
    rng = _rng(key + (0,))
    genre = str(rng.choice(list(GENRES)))
    drums = bool(rng.random() < GENRES[genre][1])
    n_labels = int(rng.choice([1, 2, 3], p=[0.55, 0.33, 0.12]))
    labels = tuple(sorted(rng.choice(CLASSES, n_labels, replace=False).tolist(), key=CLASSES.index))
    seconds = round(float(rng.uniform(*TEST_SECONDS)), 2)
    return ClipSpec(f"{TEST_DIR}/{soundfont}-{number + 1:04d}.wav", "test", soundfont, labels, seconds, genre,
                    drums, key)


def plan(per_class: int, test_clips: int, soundfonts: tuple[str, ...] = TRAINING_SOUNDFONTS,
         test_soundfonts: tuple[str, ...] = TEST_SOUNDFONTS, seed: int = 0) -> list[ClipSpec]:
    """Every clip of a corpus: ``per_class`` training clips per class, their SoundFonts taken in turn
    from ``soundfonts``, and ``test_clips`` test compositions, each rendered with every ``test_soundfonts``.

    Raises
    ------
    ParameterError
        Negative counts, an unknown SoundFont, or a training SoundFont reserved for evaluation.
    """
    if per_class < 0 or test_clips < 0:
        raise ParameterError(f"clip counts must be >= 0, got per_class={per_class}, test_clips={test_clips}")
    for sf in soundfonts:
        if sf not in TRAINING_SOUNDFONTS:
            raise ParameterError(
                f"SoundFont {sf!r} is reserved for evaluation; train on {', '.join(TRAINING_SOUNDFONTS)}"
            )
    for sf in test_soundfonts:
        if sf not in SOUNDFONTS:
            raise ParameterError(f"unknown SoundFont {sf!r}; choose from {', '.join(SOUNDFONTS)}")
    if per_class and not soundfonts:
        raise ParameterError("training clips asked for, but no training SoundFont given")
    specs = [
        _train_spec(seed, ci, k, soundfonts[k % len(soundfonts)])
        for ci in range(len(CLASSES))
        for k in range(per_class)
    ]
    specs += [_test_spec(seed, k, sf) for k in range(test_clips) for sf in test_soundfonts]
    return specs


# --- composition -------------------------------------------------------------------------------


def _register(cls: str, program: int) -> tuple[int, int]:
    return SAX_RANGES[program] if cls == "sax" else RANGES[cls]


def _scale_notes(tonic: int, scale: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    return np.array([p for p in range(lo, hi + 1) if (p - tonic) % 12 in scale])


def _melody(rng: np.random.Generator, cls: str, program: int, tonic: int, scale: tuple[int, ...],
            beat: float, start: float, end: float, velocity: int, reach_ends: bool = False) -> list[Note]:
    """A random walk over the scale in a register of about an octave and a half inside the class's range.

    ``reach_ends``: the register may reach past either end of the range by up to half its width (and
    is cut there), so that the range's lowest and highest notes come about as often as its middle
    ones; otherwise it lies inside the range and its ends are rare (a cello's two lowest notes in 3 %).
    """
    lo, hi = _register(cls, program)
    width = int(rng.integers(12, 20))
    if reach_ends:
        low = int(rng.integers(lo - width // 2, hi - width // 2 + 1))
    else:
        low = int(rng.integers(lo, max(lo + 1, hi - width + 1)))
    notes_in = _scale_notes(tonic, scale, max(lo, low), min(hi, low + width))
    art_lo, art_hi = ARTICULATIONS[str(rng.choice(list(ARTICULATIONS), p=[0.35, 0.45, 0.2]))]
    lengths = np.array([0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
    weights = rng.dirichlet(np.ones(len(lengths)) * 0.8)
    chords = cls in POLYPHONIC and rng.random() < 0.5
    idx = int(rng.integers(0, len(notes_in)))
    notes: list[Note] = []
    t = start + float(rng.uniform(0, 0.25)) * beat
    while t < end - 0.05:
        dur = float(rng.choice(lengths, p=weights)) * beat
        if rng.random() < 0.08 and notes:  # a rest
            t += dur
            continue
        step = int(rng.choice([-4, -2, -1, -1, 0, 1, 1, 2, 4]))
        idx = idx + step
        if idx < 0 or idx >= len(notes_in):
            idx = int(np.clip(idx - 2 * step, 0, len(notes_in) - 1))
        length = min(dur * float(rng.uniform(art_lo, art_hi)), end - t)
        vel = int(np.clip(velocity + rng.normal(0, 8), 30, 127))
        notes.append(Note(int(notes_in[idx]), t, length, vel))
        if chords and rng.random() < 0.4:
            for below in (2, 4):  # a third and a fifth below in the scale
                if idx - below >= 0:
                    notes.append(Note(int(notes_in[idx - below]), t, length, max(1, vel - 10)))
        t += dur
    return notes


def _progression(rng: np.random.Generator, tonic: int, scale: tuple[int, ...], n_chords: int) -> list[list[int]]:
    """Triads on scale degrees, as pitch classes relative to C."""
    degrees = [0, 3, 4, 5, 1] if len(scale) == 7 else [0, 2, 3, 1]
    out = []
    for _ in range(n_chords):
        d = int(rng.choice(degrees))
        out.append([(tonic + scale[(d + k) % len(scale)]) % 12 for k in (0, 2, 4)])
    return out


def _accompaniment(rng: np.random.Generator, program: int, chords: list[list[int]], bar: float,
                   start: float, end: float, velocity: int) -> list[Note]:
    """Held or repeated chords in the middle register, one chord per bar."""
    repeated = rng.random() < 0.5
    beat = bar / 4
    notes = []
    for i, pcs in enumerate(chords):
        t0 = start + i * bar
        if t0 >= end:
            break
        pitches = [48 + (pc - 48) % 12 + (12 if (pc - 48) % 12 < 4 else 0) for pc in pcs]
        hits = [(t0 + k * beat, beat * 0.8) for k in range(4)] if repeated else [(t0, bar * 0.95)]
        for t, d in hits:
            if t < end:
                vel = int(np.clip(velocity + rng.normal(0, 6), 20, 127))
                notes += [Note(p, t, min(d, end - t), vel) for p in pitches]
    return notes


def _bass(rng: np.random.Generator, chords: list[list[int]], bar: float, start: float, end: float,
          velocity: int) -> list[Note]:
    beat = bar / 4
    notes = []
    for i, pcs in enumerate(chords):
        root = 28 + (pcs[0] - 28) % 12
        for k in range(0, 4, int(rng.choice([1, 2]))):
            t = start + i * bar + k * beat
            if t < end:
                pitch = root + (7 if k == 2 and rng.random() < 0.4 else 0)
                notes.append(Note(pitch, t, min(beat * 0.9, end - t), int(np.clip(velocity + rng.normal(0, 6), 20, 127))))
    return notes


def _drums(rng: np.random.Generator, bar: float, start: float, end: float, velocity: int) -> list[Note]:
    """Kick on 1 and 3, snare on 2 and 4, closed hi-hat on eighths, a crash on the first beat."""
    beat = bar / 4
    notes = [Note(49, start, 0.5, velocity)]
    t, k = start, 0
    while t < end - 0.02:
        if k % 8 in (0, 4):
            notes.append(Note(36, t, 0.1, velocity))
        if k % 8 in (2, 6):
            notes.append(Note(38, t, 0.1, velocity))
        notes.append(Note(42, t, 0.05, max(1, velocity - 15 + int(rng.integers(-5, 6)))))
        t += beat / 2
        k += 1
    return notes


def compose(spec: ClipSpec, offset: float = 0.0) -> list[Track]:
    """The MIDI tracks of ``spec``, its time 0 placed at ``offset`` seconds; channels 0-7 and 9.

    Predominant parts: volume 100-127, velocity 85-115. Accompaniment: volume 40-75 (about
    10-20 dB lower), velocity 45-75. Drums: volume 45-80.
    """
    rng = _rng(spec.key + (1,))
    tonic = int(rng.integers(0, 12))
    scale = SCALES[str(rng.choice(list(SCALES)))]
    bpm = float(rng.uniform(*GENRES[spec.genre][0]))
    beat = 60.0 / bpm
    end = offset + spec.seconds
    tracks: list[Track] = []
    channel = 0
    # 1. the predominant parts: all together, or one after another in equal turns
    together = len(spec.labels) == 1 or rng.random() < 0.5
    turn = spec.seconds / len(spec.labels)
    for i, cls in enumerate(spec.labels):
        program = int(rng.choice(PROGRAMS[cls]))
        t0, t1 = (offset, end) if together else (offset + i * turn, offset + (i + 1) * turn)
        notes = _melody(rng, cls, program, tonic, scale, beat, t0, t1, int(rng.integers(85, 116)))
        tracks.append(Track(program, channel, notes, int(rng.integers(100, 128)), offset))
        channel += 1
    # 2. accompaniment by other classes, and a bass line
    chords = _progression(rng, tonic, scale, int(np.ceil(spec.seconds / (4 * beat))) + 1)
    p_accompany = 0.6 if spec.split == "train" else 0.8
    if rng.random() < p_accompany:
        others = [c for c in ACCOMPANIMENT if c not in spec.labels]
        for cls in rng.choice(others, int(rng.integers(1, 3)), replace=False):
            program = int(rng.choice(PROGRAMS[str(cls)]))
            notes = _accompaniment(rng, program, chords, 4 * beat, offset, end, int(rng.integers(45, 76)))
            tracks.append(Track(program, channel, notes, int(rng.integers(40, 76)), offset))
            channel += 1
        if rng.random() < 0.6:
            notes = _bass(rng, chords, 4 * beat, offset, end, int(rng.integers(50, 80)))
            tracks.append(Track(int(rng.choice(BASS_PROGRAMS)), channel, notes, int(rng.integers(50, 80)), offset))
    # 3. drums
    if spec.drums:
        notes = _drums(rng, 4 * beat, offset, end, int(rng.integers(60, 100)))
        tracks.append(Track(0, DRUM_CHANNEL, notes, int(rng.integers(45, 81)), offset))
    return tracks


# --- rendering ---------------------------------------------------------------------------------


def _peak(spec: ClipSpec) -> float:
    """Each clip's peak level, 0.25-0.9 of full scale (-12 to -1 dBFS)."""
    return float(_rng(spec.key + (2,)).uniform(0.25, 0.9))


def render_clips(specs: list[ClipSpec], out: str | Path) -> int:
    """Render ``specs`` (one SoundFont) in one fluidsynth run and write them under ``out``; returns the count."""
    soundfonts = {s.soundfont for s in specs}
    if len(soundfonts) != 1:
        raise ParameterError(f"one SoundFont per render run, got {sorted(soundfonts)}")
    offsets, tracks, t = [], [], 0.0
    for spec in specs:
        offsets.append(t)
        tracks += compose(spec, t)
        t += ALIGN_SECONDS * np.ceil((spec.seconds + GAP_SECONDS) / ALIGN_SECONDS)
    audio = render(tracks, specs[0].soundfont, t, SAMPLE_RATE, MIDI_TEMPO, RENDER_GAIN)
    for spec, t0 in zip(specs, offsets):
        start = int(round(t0 * SAMPLE_RATE))
        clip = audio[start : start + int(round(spec.seconds * SAMPLE_RATE))]
        peak = float(np.abs(clip).max())
        if peak == 0.0:
            raise RenderError(f"{spec.path}: the render is silent ({spec.soundfont})")
        path = Path(out) / spec.path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        soundfile.write(str(tmp), clip * (_peak(spec) / peak), SAMPLE_RATE, subtype="PCM_16", format="WAV")
        tmp.replace(path)
        if spec.split == "test":
            path.with_suffix(".txt").write_text("".join(f"{c}\t\n" for c in spec.labels))
    return len(specs)


def write_manifest(specs: list[ClipSpec], out: str | Path) -> Path:
    """``out/synth.csv``: path, split, soundfont, labels (space-separated), seconds, genre, drums."""
    path = Path(out) / MANIFEST
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "split", "soundfont", "labels", "seconds", "genre", "drums"])
        for s in specs:
            w.writerow([s.path, s.split, s.soundfont, " ".join(s.labels), s.seconds, s.genre, int(s.drums)])
    return path


class _HasPath(Protocol):
    @property
    def path(self) -> str: ...


Spec = TypeVar("Spec", bound=_HasPath)


def render_missing(specs: list[Spec], out: Path, render_chunk: Callable[[list[Spec], Path], int],
                   group: Callable[[Spec], str], size: int, processes: int,
                   on_progress: Callable[[int], None] | None) -> None:
    """Render every spec whose ``path`` is not yet a file under ``out``.

    The specs go in chunks of at most ``size`` sharing ``group(spec)`` (one synthesiser start, one
    SoundFont load, per chunk), ``processes`` chunks at a time; ``render_chunk(chunk, out)`` returns
    how many it wrote. ``on_progress(n)`` hears first of those already on disk, then of each chunk.
    """
    todo = [s for s in specs if not (out / s.path).is_file()]
    if on_progress and len(todo) < len(specs):
        on_progress(len(specs) - len(todo))
    by_group: dict[str, list[Spec]] = {}
    for s in todo:
        by_group.setdefault(group(s), []).append(s)
    chunks = [part[i : i + size] for part in by_group.values() for i in range(0, len(part), size)]
    if processes <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            n = render_chunk(chunk, out)
            if on_progress:
                on_progress(n)
    else:
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            for n in pool.map(render_chunk, chunks, [out] * len(chunks)):
                if on_progress:
                    on_progress(n)


def synthesize(out: str | Path, specs: list[ClipSpec], processes: int = 2,
               on_progress: Callable[[int], None] | None = None) -> Path:
    """Write the manifest, then render every clip of ``specs`` not yet on disk, ``processes``
    fluidsynth runs at a time; returns the manifest's path. ``on_progress(n)`` is called as clips finish.
    """
    out = Path(out)
    for sf in {s.soundfont for s in specs}:
        find_soundfont(sf)
    out.mkdir(parents=True, exist_ok=True)
    manifest = write_manifest(specs, out)  # first, so that a partial corpus knows its SoundFonts too
    render_missing(specs, out, render_clips, attrgetter("soundfont"), CLIPS_PER_RENDER, processes, on_progress)
    return manifest


def default_processes() -> int:
    return max(1, min(4, os.cpu_count() or 1))
