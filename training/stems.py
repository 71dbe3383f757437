"""A stem bank: short mono recordings of single parts that a trainer mixes on the fly.

Four roles of stem, all ``seconds`` long (default 4 s, so that 3-s training crops can move):

``pred``
    a solo melodic part of one class (``cls``): the predominant instrument of a training mix; or,
    in a chosen share (kind ``note``), one held note anywhere in the class's range, as sample
    libraries and teaching sets record instruments;
``acc``
    accompaniment with no predominant part: chords, pads and bass lines on programs of any class
    (pads, strings, organs and choirs swelling with the phrase);
``drums``
    drum-kit grooves (General MIDI channel 10);
``none``
    non-music (``kind``): speech, noise, hum, drums alone, near-silence, and other sounds
    (wind, applause, clicks, rain, sound effects).

Musical stems are rendered from generated MIDI by every installed sample bank (:data:`BANKS`), each
stem by one bank; a class is rendered only by banks that hold one of its programs. Solo parts are
played with expression (accents, swells, loose timing, vibrato on sustained instruments: see
:mod:`expression`), except by samplers, which add their own vibrato. Seven of every eight ``voi``
stems are sung (bank ``world``: espeak-ng syllables re-sung through the WORLD vocoder, see
:mod:`voice`), the others are General MIDI choirs and voices. Where recordings of a class's notes
are installed (:mod:`sampler`), every other solo stem of that class is played from them. Every stem is
drawn from a random generator seeded by ``(seed, role, class or kind, number)``, so a bank is the
same on every machine, and growing ``per_class`` keeps the stems already drawn.

Layout written under ``OUT``::

    index.json                     {"sample_rate": 44100, "stems": [{"path", "role", "cls", "bank", "kind", "seconds"}]}
    pred/<bank>/<cls>/<n>.ogg
    acc/<bank>/<n>.ogg
    drums/<bank>/<n>.ogg
    none/<kind>/<n>.ogg

Stems are peak-normalised to -3 dBFS, except near-silence, whose level is its point.
"""

from __future__ import annotations

import dataclasses
import json
from operator import attrgetter
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile

from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.config import SAMPLE_RATE
from instrumentd.pipeline.errors import ParameterError

from . import broadcast, noise, physical, sampler, speech, voice
from .expression import VIBRATO_CLASSES, dynamics, perform
from .midi import DRUM_CHANNEL, Note, Track
from .render import (TIMIDITY_CONFIGS, RenderError, find_soundfont, render, render_timidity,
                     soundfont_presets, timidity_presets)
from .synth import (ACCOMPANIMENT, ALIGN_SECONDS, BASS_PROGRAMS, GAP_SECONDS, MIDI_TEMPO, PROGRAMS, RENDER_GAIN,
                    SCALES, _accompaniment, _bass, _drums, _melody, _progression, _register, render_missing)

INDEX = "index.json"
STEM_SECONDS = 4.0
PEAK = 10 ** (-3 / 20)  # -3 dBFS
ROLES = ("pred", "acc", "drums", "none")
NONE_KINDS = ("speech", "noise", "hum", "drums", "silence", "env")
FORMATS = {"ogg": ("OGG", "VORBIS"), "flac": ("FLAC", "PCM_16")}
OGG_COMPRESSION = 1.0  # libsndfile's Vorbis setting (quality 0): about 45 kbit/s, 5.6 kB per second of stem
STEMS_PER_RENDER = 24  # stems per synthesiser run: loading a SoundFont costs up to 3 s
PAD_PROGRAMS = (48, 49, 50, 51, 88, 89, 90, 91, 92, 94, 95)  # string ensembles, synth strings, pads
SWELLING_PROGRAMS = frozenset(PAD_PROGRAMS + tuple(p for c in ("cel", "org", "vio", "voi") for p in PROGRAMS[c]))
SFX_PROGRAMS = (121, 122, 123, 124, 125, 126, 127)  # GM sound effects: breath .. gunshot (not fret noise)


@dataclasses.dataclass(frozen=True)
class Bank:
    """A sample bank: ``engine`` ``"fluidsynth"`` (``source``: a SoundFont short name),
    ``"timidity"`` (``source``: a patch-set config), ``"sampler"`` (``source``: a name in
    :data:`sampler.SAMPLE_PACKAGES`, recordings of one instrument's notes) or ``"stk"`` (the
    Synthesis ToolKit's physical models, :mod:`physical`; ``source`` unused)."""

    engine: str
    source: str

    def presets(self) -> frozenset[tuple[int, int]]:
        """The ``(bank, program)`` pairs it plays; drum kits are bank 128. A sampler plays every
        program of its one class."""
        if self.engine == "timidity":
            return timidity_presets(self.source)
        if self.engine == "sampler":
            return frozenset((0, p) for p in PROGRAMS[sampler.SAMPLE_PACKAGES[self.source].cls])
        if self.engine == "stk":
            return physical.presets()
        return soundfont_presets(str(find_soundfont(self.source)))

    def installed(self) -> bool:
        if self.engine == "timidity":
            return Path(self.source).is_file()
        if self.engine == "sampler":
            return sampler.SAMPLE_PACKAGES[self.source].installed()
        if self.engine == "stk":
            return physical.installed()
        try:
            find_soundfont(self.source)
        except RenderError:
            return False
        return True

    def render(self, tracks: list[Track], seconds: float, seed: tuple[int, ...] = (0,)) -> np.ndarray:
        """``float32 [seconds * SAMPLE_RATE]`` mono; ``seed`` draws a sampler's vibratos and a
        physical model's timbres."""
        if self.engine == "stk":
            return physical.render_stk(tracks, seconds, SAMPLE_RATE, np.random.default_rng(list(seed)))
        if self.engine == "sampler":
            package = sampler.SAMPLE_PACKAGES[self.source]
            return sampler.render_sampled(tracks, package, seconds, SAMPLE_RATE, np.random.default_rng(list(seed)))
        if self.engine == "timidity":
            return render_timidity(tracks, self.source, seconds, SAMPLE_RATE, MIDI_TEMPO)
        return render(tracks, self.source, seconds, SAMPLE_RATE, MIDI_TEMPO, RENDER_GAIN)


BANKS: dict[str, Bank] = {
    "fluidr3": Bank("fluidsynth", "fluidr3"),
    "fluidr3gs": Bank("fluidsynth", "fluidr3gs"),  # sound-effect variations only: none/env stems
    "timgm6mb": Bank("fluidsynth", "timgm6mb"),
    "musescore": Bank("fluidsynth", "musescore"),
    "musescore-hq": Bank("fluidsynth", "musescore-hq"),
    "csound": Bank("fluidsynth", "csound"),
    "merlin": Bank("fluidsynth", "merlin"),
    "fluidr3mono": Bank("fluidsynth", "fluidr3mono"),
    "freepats": Bank("timidity", str(TIMIDITY_CONFIGS["freepats"])),
    "stk": Bank("stk", ""),  # physical models: cel, cla, flu, org, sax, vio only
    **{name: Bank("sampler", name) for name in sampler.SAMPLE_PACKAGES},
}
SUNG = "world"  # voi stems sung by espeak-ng syllables through the WORLD vocoder (voice.py)
ACC_BASS_SHARE = 0.7  # accompaniment stems with a bass line (acoustic, finger or picked bass, MIDI 28-39)
SUNG_SHARE = 7  # of every 8 voi stems, when SUNG is among the banks; the others are GM choirs and voices
GENERATED = ("espeak-ng", "numpy", SUNG)  # "banks" of stems made without MIDI


@dataclasses.dataclass(frozen=True)
class StemSpec:
    """One stem to render: where it goes, what it is, which bank (or generator) makes it.

    ``key`` seeds everything about it: the same key gives the same music whatever the bank.
    """

    path: str  # relative to the bank root
    role: str
    cls: str | None
    kind: str | None
    bank: str
    seconds: float
    key: tuple[int, ...]
    codec: str | None = None  # a broadcast codec it went through before it was stored ("mp3:64", see broadcast.py)
    bass_share: float = ACC_BASS_SHARE  # an accompaniment's chance of a bass line, drawn from its key
    vibrato: bool = True  # False: a solo part of a sustained class played straight, without vibrato

    def entry(self) -> dict:
        """The stem's record in ``index.json``."""
        return {"path": self.path, "role": self.role, "cls": self.cls, "bank": self.bank, "kind": self.kind,
                "seconds": self.seconds, **({"codec": self.codec} if self.codec else {}),
                **({"bass_share": self.bass_share} if self.role == "acc" and self.bass_share != ACC_BASS_SHARE
                   else {}), **({} if self.vibrato else {"vibrato": False})}


def installed_banks() -> tuple[str, ...]:
    """Names of the :data:`BANKS` installed here, and :data:`SUNG` where espeak-ng and pyworld are."""
    return tuple(name for name, bank in BANKS.items() if bank.installed()) + ((SUNG,) if voice.available() else ())


def counts(per_class: int) -> dict[str, int]:
    """Stems per group for ``per_class``: ``per_class`` per class, accompaniments and speech;
    half as many drum grooves and stems of each other non-music kind."""
    half = (per_class + 1) // 2
    return {"pred": per_class, "acc": per_class, "drums": half, "speech": per_class,
            **{k: half for k in NONE_KINDS if k != "speech"}}


def _programs_in(bank: str, programs: tuple[int, ...]) -> tuple[int, ...]:
    presets = BANKS[bank].presets()
    return tuple(p for p in programs if (0, p) in presets)


def _sfx_presets(bank: str) -> tuple[tuple[int, int], ...]:
    presets = BANKS[bank].presets()
    variations = sorted((b, p) for b, p in presets if 0 < b < 128 and p >= 120)
    return tuple(variations) or tuple((0, p) for p in SFX_PROGRAMS if (0, p) in presets)


def _has_drums(bank: str) -> bool:
    return (128, 0) in BANKS[bank].presets()


def _has_gm(bank: str) -> bool:
    return all((0, p) in BANKS[bank].presets() for p in (0, 32, 48))


def plan(per_class: int, banks: tuple[str, ...] | None = None, seed: int = 0, seconds: float = STEM_SECONDS,
         fmt: str = "ogg", codec_share: float = 0.0, note_share: float = 0.0,
         bass_share: float = ACC_BASS_SHARE, straight_share: float = 0.0,
         classes: tuple[str, ...] | None = None) -> list[StemSpec]:
    """Every stem of a bank with ``per_class`` stems per class (see :func:`counts`), rendered by
    ``banks`` (default: every installed bank) taken in turn; ``codec_share`` of them, drawn by each
    stem's key, go through a broadcast codec (:mod:`broadcast`) before they are stored;
    ``note_share`` of the MIDI-rendered solo stems, drawn likewise, are one held note (kind
    ``note``, :func:`held_note`) instead of a melody; ``bass_share`` of the accompaniments have a
    bass line under their chords (a low line of no class of its own, in the register of a cello's
    lowest notes); ``straight_share`` of the solo stems of sustained classes (:data:`VIBRATO_CLASSES`,
    the sung voice aside), drawn likewise, are played without the vibrato added here (pitch bends,
    the sampler's; a sound font preset's own vibrato stays), as many real players and sample
    libraries hold a note. ``classes`` (default: all) keeps only the solo stems of those classes,
    with the keys they have in the whole bank, and no other role: extra stems of a few classes from
    a bank that plays only some (``stk``).

    Raises
    ------
    ParameterError
        A negative count, a length under 1 s, an unknown format, bank or class, banks that cannot
        play a class, or a codec, note, bass or straight share outside 0-1.
    """
    if per_class < 0:
        raise ParameterError(f"--per-class must be >= 0, got {per_class}")
    if not seconds >= 1.0:
        raise ParameterError(f"stems must be at least 1 s long, got {seconds}")
    if fmt not in FORMATS:
        raise ParameterError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not 0.0 <= codec_share <= 1.0:
        raise ParameterError(f"--codecs must be a share of the stems, 0-1, got {codec_share}")
    if not 0.0 <= note_share <= 1.0:
        raise ParameterError(f"--notes must be a share of the solo stems, 0-1, got {note_share}")
    if not 0.0 <= bass_share <= 1.0:
        raise ParameterError(f"--acc-bass must be a share of the accompaniments, 0-1, got {bass_share}")
    if not 0.0 <= straight_share <= 1.0:
        raise ParameterError(f"--straight must be a share of the solo stems, 0-1, got {straight_share}")
    if classes is not None and not classes:
        raise ParameterError(f"--classes names no class; choose from {', '.join(CLASSES)}")
    for c in classes or ():
        if c not in CLASSES:
            raise ParameterError(f"unknown class {c!r}; choose from {', '.join(CLASSES)}")
    banks = installed_banks() if banks is None else banks
    for b in banks:
        if b not in BANKS and b != SUNG:
            raise ParameterError(f"unknown bank {b!r}; choose from {', '.join(BANKS)}, {SUNG}")
        if b not in installed_banks():
            raise ParameterError(f"bank {b!r} is not installed here (installed: {', '.join(installed_banks())})")
    n = {group: k if classes is None or group == "pred" else 0 for group, k in counts(per_class).items()}
    ext = fmt
    midi_banks = tuple(b for b in banks if b in BANKS)
    specs: list[StemSpec] = []
    for ci, cls in enumerate(CLASSES):
        if classes is not None and cls not in classes:
            continue
        players = [b for b in midi_banks if _programs_in(b, PROGRAMS[cls])]
        sung = cls == "voi" and SUNG in banks
        if per_class and not players and not sung:
            raise ParameterError(f"none of the banks {', '.join(banks)} plays class {cls!r}")
        recorded = [b for b in players if BANKS[b].engine == "sampler"]
        synthetic = [b for b in players if BANKS[b].engine != "sampler"] or recorded
        for k in range(n["pred"]):
            if sung and (k % 8 < SUNG_SHARE or not players):
                b = SUNG
            elif recorded and k % 2 == 0:
                b = recorded[(k // 2) % len(recorded)]
            else:
                b = synthetic[(k // 2 if recorded else k) % len(synthetic)]
            key = (seed, 0, ci, k)
            note = b != SUNG and _rng(key, 5).random() < note_share
            straight = b != SUNG and cls in VIBRATO_CLASSES and _rng(key, 7).random() < straight_share
            specs.append(StemSpec(f"pred/{b}/{cls}/{k:05d}.{ext}", "pred", cls, "note" if note else None, b, seconds,
                                  key, vibrato=not straight))
    for role, ri, fits in (("acc", 1, _has_gm), ("drums", 2, _has_drums)):
        players = [b for b in midi_banks if fits(b)]
        if n[role] and not players:
            raise ParameterError(f"none of the banks {', '.join(banks)} can render {role} stems")
        for k in range(n[role]):
            b = players[k % len(players)]
            specs.append(StemSpec(f"{role}/{b}/{k:05d}.{ext}", role, None, None, b, seconds, (seed, ri, 0, k),
                                  bass_share=bass_share))
    drum_banks = [b for b in midi_banks if _has_drums(b)]
    sfx_banks = [b for b in midi_banks if _sfx_presets(b)]
    for ki, kind in enumerate(NONE_KINDS):
        for k in range(n[kind]):
            if kind == "speech":
                b = "espeak-ng"
            elif kind == "drums" and drum_banks:
                b = drum_banks[k % len(drum_banks)]
            elif kind == "env" and sfx_banks and k % 2 == 0:
                b = sfx_banks[(k // 2) % len(sfx_banks)]
            else:
                b = "numpy"
            if kind == "drums" and b == "numpy":
                raise ParameterError(f"none of the banks {', '.join(banks)} has a drum kit")
            specs.append(StemSpec(f"none/{kind}/{k:05d}.{ext}", "none", None, kind, b, seconds, (seed, 3, ki, k)))
    return [_with_codec(spec, codec_share) for spec in specs] if codec_share > 0 else specs


def _with_codec(spec: StemSpec, share: float) -> StemSpec:
    """``spec`` with a broadcast codec and bitrate drawn from its own key, for a ``share`` of the keys."""
    rng = _rng(spec.key, 4)
    if rng.random() >= share:
        return spec
    codec = f"{rng.choice(list(broadcast.CODECS))}:{rng.choice(broadcast.BITRATES_KBPS)}"
    return dataclasses.replace(spec, codec=codec)


# --- composition -------------------------------------------------------------------------------


def _rng(key: tuple[int, ...], stream: int) -> np.random.Generator:
    return np.random.default_rng(list(key) + [stream])


def _key_and_beat(rng: np.random.Generator) -> tuple[int, tuple[int, ...], float]:
    tonic = int(rng.integers(0, 12))
    scale = SCALES[str(rng.choice(list(SCALES)))]
    return tonic, scale, 60.0 / float(rng.uniform(60, 180))


def compose(spec: StemSpec, offset: float = 0.0) -> list[Track]:
    """The MIDI tracks of a ``pred``, ``acc``, ``drums`` or MIDI-rendered ``none`` stem, its time 0
    at ``offset`` seconds."""
    rng = _rng(spec.key, 1)
    end = offset + spec.seconds
    tonic, scale, beat = _key_and_beat(rng)
    if spec.role == "pred":
        program = int(rng.choice(_programs_in(spec.bank, PROGRAMS[spec.cls])))
        if spec.kind == "note":
            notes = held_note(rng, _register(spec.cls, program), offset, end)
        else:
            notes = _melody(rng, spec.cls, program, tonic, scale, beat, offset, end, int(rng.integers(70, 120)),
                            reach_ends=True)
        track = Track(program, 0, notes, int(rng.integers(90, 128)), offset, vibrato=spec.vibrato)
        if BANKS[spec.bank].engine != "sampler":  # a sampler plays its own vibrato and ignores controllers
            track.notes, track.controls = perform(_rng(spec.key, 2), spec.cls, notes, beat, offset, end,
                                                  track.bend_range, spec.vibrato)
        return [track]
    if spec.role == "drums" or spec.kind == "drums":
        notes = _drums(rng, 4 * beat, offset, end, int(rng.integers(60, 110)))
        return [Track(0, DRUM_CHANNEL, notes, 100, offset)]
    if spec.role == "acc":
        chords = _progression(rng, tonic, scale, int(np.ceil(spec.seconds / (4 * beat))) + 1)
        choices = [p for c in ACCOMPANIMENT for p in PROGRAMS[c]] + list(PAD_PROGRAMS)
        tracks, swells = [], _rng(spec.key, 2)
        for channel, program in enumerate(rng.choice(choices, int(rng.integers(1, 3)), replace=False)):
            notes = _accompaniment(rng, int(program), chords, 4 * beat, offset, end, int(rng.integers(50, 95)))
            tracks.append(Track(int(program), channel, notes, int(rng.integers(70, 110)), offset))
            if program in SWELLING_PROGRAMS:  # pads, strings, organs and choirs swell with the phrase
                tracks[-1].controls = dynamics(swells, notes, offset, end, struck=False)[1]
        if rng.random() < spec.bass_share:
            notes = _bass(rng, chords, 4 * beat, offset, end, int(rng.integers(60, 100)))
            tracks.append(Track(int(rng.choice(BASS_PROGRAMS)), 3, notes, int(rng.integers(80, 115)), offset))
        return tracks
    if spec.kind == "env":
        bank, program = _sfx_presets(spec.bank)[int(rng.integers(0, len(_sfx_presets(spec.bank))))]
        notes, t = [], offset + float(rng.uniform(0, 0.5))
        while t < end:
            length = float(rng.uniform(0.3, 3.0))
            notes.append(Note(int(rng.integers(48, 73)), t, min(length, end - t), int(rng.integers(60, 128))))
            t += length + float(rng.uniform(0.0, 1.0))
        return [Track(program, 0, notes, 110, offset, bank=bank)]
    raise ParameterError(f"{spec.path}: not a MIDI-rendered stem")


def held_note(rng: np.random.Generator, register: tuple[int, int], start: float, end: float) -> list[Note]:
    """One note, as sample libraries and teaching sets record an instrument: its pitch drawn evenly
    over ``register`` (MIDI notes, both ends included), from up to 0.3 s after ``start`` to up to 1 s
    before ``end`` (seconds; a struck string decays by itself), at any velocity from soft to loud."""
    begin = start + float(rng.uniform(0.0, 0.3))
    stop = max(begin + 0.5, end - float(rng.uniform(0.0, 1.0)))
    return [Note(int(rng.integers(register[0], register[1] + 1)), begin, stop - begin, int(rng.integers(40, 128)))]


def generate(spec: StemSpec) -> np.ndarray:
    """A stem made without MIDI: a sung part, speech, noise, hum, near-silence or a numpy environment sound."""
    rng = _rng(spec.key, 1)
    n = int(round(spec.seconds * SAMPLE_RATE))
    if spec.bank == SUNG:  # mostly one singer; some doubled, some a small group
        layers = int(rng.choice([1, 2, 3, 4], p=[0.8, 0.1, 0.06, 0.04]))
        return voice.sing(rng, spec.seconds, SAMPLE_RATE, layers=layers)[0]
    if spec.kind == "speech":
        return speech.talk(rng, n, SAMPLE_RATE, "train")
    if spec.kind == "noise":
        return noise.coloured_noise(rng, n, float(rng.choice(list(noise.NOISE_COLOURS.values()))))
    if spec.kind == "hum":
        return noise.hum(rng, n, SAMPLE_RATE, float(rng.choice([50.0, 60.0])))
    if spec.kind == "silence":
        level = -np.inf if rng.random() < 0.2 else float(rng.uniform(-90, -50))
        return noise.near_silence(rng, n, level)
    if spec.kind == "env":
        return noise.ENVIRONMENTS[str(rng.choice(list(noise.ENVIRONMENTS)))](rng, n, SAMPLE_RATE)
    raise ParameterError(f"{spec.path}: not a generated stem")


# --- rendering ---------------------------------------------------------------------------------


def _write(spec: StemSpec, audio: np.ndarray, out: Path) -> None:
    if spec.codec:
        audio = broadcast.round_trip(audio, SAMPLE_RATE, spec.codec)
    peak = float(np.abs(audio).max())
    if spec.kind != "silence":
        if peak == 0.0:
            raise RenderError(f"{spec.path}: the render is silent ({spec.bank})")
        audio = audio * (PEAK / peak)
    path = out / spec.path
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt, subtype = FORMATS[path.suffix[1:]]
    tmp = path.with_name(path.name + ".part")
    extra = {"compression_level": OGG_COMPRESSION} if fmt == "OGG" else {}
    soundfile.write(str(tmp), audio.astype(np.float32), SAMPLE_RATE, format=fmt, subtype=subtype, **extra)
    tmp.replace(path)


def render_stems(specs: list[StemSpec], out: str | Path) -> int:
    """Render ``specs`` (one bank) and write them under ``out``: MIDI stems in one synthesiser run,
    one after another with aligned gaps; returns the count."""
    out = Path(out)
    if specs[0].bank in GENERATED:
        for spec in specs:
            _write(spec, generate(spec), out)
        return len(specs)
    offsets, tracks, t = [], [], 0.0
    for spec in specs:
        offsets.append(t)
        tracks += compose(spec, t)
        t += ALIGN_SECONDS * np.ceil((spec.seconds + GAP_SECONDS) / ALIGN_SECONDS)
    audio = BANKS[specs[0].bank].render(tracks, t, specs[0].key)
    for spec, t0 in zip(specs, offsets):
        start = int(round(t0 * SAMPLE_RATE))
        _write(spec, audio[start : start + int(round(spec.seconds * SAMPLE_RATE))], out)
    return len(specs)


def write_index(specs: list[StemSpec], out: str | Path, add: bool = False) -> Path:
    """``out/index.json``: the sample rate and every stem's record; with ``add``, after the records
    the index already holds (one of the same path is replaced)."""
    path = Path(out) / INDEX
    entries = [s.entry() for s in specs]
    if add:
        paths = {e["path"] for e in entries}
        entries = [e for e in _existing_stems(path) if e["path"] not in paths] + entries
    tmp = path.with_name(INDEX + ".part")
    tmp.write_text(json.dumps({"sample_rate": SAMPLE_RATE, "stems": entries}, indent=0))
    tmp.replace(path)
    return path


def _existing_stems(path: Path) -> list[dict]:
    """The stem records of the index at ``path``, which must be at :data:`SAMPLE_RATE`."""
    try:
        index = json.loads(path.read_text())
        stems, rate = list(index["stems"]), index["sample_rate"]
    except FileNotFoundError:
        raise ParameterError(f"{path.parent}: no {INDEX} to add stems to (leave out --add to start a bank)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ParameterError(f"{path}: malformed stem index ({exc})") from None
    if rate != SAMPLE_RATE:
        raise ParameterError(f"{path}: a bank at {rate} Hz; stems are rendered at {SAMPLE_RATE} Hz")
    return stems


def synthesize_stems(out: str | Path, specs: list[StemSpec], processes: int = 2,
                     on_progress: Callable[[int], None] | None = None, add: bool = False) -> Path:
    """Render every stem of ``specs`` not yet on disk, ``processes`` at a time, then write the index
    (``add``: after the stems it lists already); returns its path. ``on_progress(n)`` is called as
    stems finish."""
    out = Path(out)
    if add:
        _existing_stems(out / INDEX)  # refused before anything is rendered
    out.mkdir(parents=True, exist_ok=True)
    render_missing(specs, out, render_stems, attrgetter("bank"), STEMS_PER_RENDER, processes, on_progress)
    return write_index(specs, out, add)
