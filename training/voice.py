"""Sung melodies from spoken syllables: espeak-ng speech re-sung through the WORLD vocoder (pyworld).

General MIDI "choir aahs" are not a singer; this module makes a voice that sings words:

1. Lyrics: a random run of one-syllable words of one language (English, Italian, Spanish,
   German, French, Portuguese, or vocalises such as "la" and "oh"), one syllable per note, some
   held over two or three notes (melisma).
2. Speech: espeak-ng speaks each syllable slowly (male or female voice variants), once per
   process: :func:`analyse` caches its WORLD parameters.
3. Analysis: Harvest (f0, only to tell voiced frames; DIO misses some espeak voices), CheapTrick (spectral envelope),
   D4C (aperiodicity), 5 ms frames. Each syllable is cut into onset consonants, the vowel nucleus
   (the longest run of voiced, periodic frames with most energy below 1.5 kHz, within 12 dB of the
   loudest) and coda consonants.
4. Timing: each note's onset consonants come just before the note, so the vowel lands on the
   beat; the nucleus is time-stretched to the note (its first and last quarter at natural speed,
   the steady middle stretched, so diphthongs glide at the end); the coda closes the note.
5. Pitch: the melody replaces the spoken f0 on voiced frames: notes in a male or female range,
   legato with raised-cosine portamento of 30-150 ms between notes, some scoops into phrase
   starts, vibrato per note (rate 4.5-6.5 hz, depth 20-80 cents peak, starting 0.1-0.35 s after
   the onset and fading in), a slow random drift of a few cents and a little jitter.
6. Colour: the spectral envelope's frequency axis is warped (x0.88-1.16, formants up or down)
   and high bands made breathier; levels follow a phrase arc with per-note accents and swells.
7. Synthesis at 22.05 kHz, resampled to the output rate, with breath noise in the rests and
   a faint air band above 5 kHz; some stems are doubled or sung by a small group (2-4 layers
   with their own timing, detuning and vibrato).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile

from instrumentd.pipeline.audio import resample, to_mono

from .midi import Note
from .render import RenderError

WORLD_SR = 22050  # hz: espeak-ng's own rate
FRAME_MS = 5.0  # WORLD frame period
LYRICS = {  # language -> one-syllable words a song might use
    "en": "love you me my night day heart oh so go home light time know free fly sky sun rain dream stay "
          "more one all now see feel soul fire down way high".split(),
    "it": "la mi sol te vo ce cuor mar sei no ma per con più blu fa do re ciel tu noi qui là già".split(),
    "es": "yo tu sol mar luz sin mi voy fue más paz son ya dos fin ver sé tan por hoy".split(),
    "de": "ich du mein dein nacht herz licht so ja nie mehr tag wind traum weit hier dort".split(),
    "fr": "je tu mon toi moi ciel mer nuit jour coeur vie doux la bleu temps loin dis".split(),
    "pt": "eu mar sol luz paz dor céu flor vou tão mais sim meu teu lá só".split(),
    "vocalise": "la na da ah oh oo ma no lu".split(),
}
VOCALISE_VOICE = "it"  # vocalises are read with Italian vowels
VARIANTS = {
    "male": ("m1", "m2", "m3", "m4", "m6", "m7", "klatt", "klatt2", "david", "adam"),
    "female": ("f1", "f2", "f3", "f4", "f5", "steph", "anika", "belinda", "Andrea", "aunty"),
}
RANGES = {"male": (43, 69), "female": (55, 81)}  # MIDI notes: G2-A4 and G3-A5
ESPEAK_PITCH = {"male": 45, "female": 65}  # one per range, so that syllable analyses are reused
WARP = {"male": (0.88, 1.06), "female": (0.96, 1.16)}  # spectral-envelope frequency scaling


def _world():
    """The pyworld module. pyworld 0.3.5's package init imports ``pkg_resources``, which recent
    setuptools no longer ships; its compiled module works without it and is loaded directly then."""
    try:
        import pyworld

        return pyworld
    except ModuleNotFoundError as err:
        if err.name != "pkg_resources":
            raise RenderError("pyworld not installed (pip install pyworld)") from err
    spec = importlib.util.find_spec("pyworld")
    library = next(Path(spec.submodule_search_locations[0]).glob("pyworld.*.so"))
    ext = importlib.util.spec_from_file_location("pyworld.pyworld", library)
    module = importlib.util.module_from_spec(ext)
    ext.loader.exec_module(module)
    return module


def available() -> bool:
    """Whether espeak-ng and pyworld are installed."""
    return shutil.which("espeak-ng") is not None and importlib.util.find_spec("pyworld") is not None


@dataclasses.dataclass(frozen=True)
class Syllable:
    """WORLD parameters of one spoken syllable, 5 ms frames: ``sp`` and ``ap`` ``float64 [frames, bins]``
    (power envelope, aperiodicity), ``voiced`` ``bool [frames]``, and the nucleus ``frames[start:end]``."""

    sp: np.ndarray
    ap: np.ndarray
    voiced: np.ndarray
    start: int
    end: int


@functools.lru_cache(maxsize=512)
def analyse(word: str, voice: str, pitch: int) -> Syllable:
    """Speak ``word`` slowly with espeak-ng ``voice`` (``language+variant``) at espeak ``pitch`` 0-99,
    and split its WORLD analysis into onset, nucleus and coda."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RenderError("espeak-ng not found on PATH (Debian: apt-get install espeak-ng)")
    proc = subprocess.run([exe, "-v", voice, "-s", "90", "-p", str(pitch), "-z", "--stdout", word], capture_output=True)
    if proc.returncode != 0 or len(proc.stdout) < 100:
        raise RenderError(f"espeak-ng failed ({proc.returncode}) for voice {voice}: "
                          f"{proc.stderr.decode(errors='replace').strip()[:200]}")
    audio, sr = soundfile.read(io.BytesIO(proc.stdout), dtype="float64", always_2d=True)
    x = np.ascontiguousarray(resample(to_mono(audio).astype(np.float32), sr, WORLD_SR), dtype=np.float64)
    world = _world()
    f0, t = world.harvest(x, WORLD_SR, f0_floor=60.0, f0_ceil=600.0, frame_period=FRAME_MS)
    sp = world.cheaptrick(x, f0, t, WORLD_SR)
    ap = world.d4c(x, f0, t, WORLD_SR)
    energy = 10 * np.log10(sp.sum(1) + 1e-20)
    voiced = _fill_gaps(f0 > 0, 3)
    if not voiced.any():
        raise RenderError(f"espeak-ng voice {voice} said {word!r} without a voiced frame")
    low = np.arange(sp.shape[1]) * WORLD_SR / (2 * (sp.shape[1] - 1)) < 1500
    vowel_like = (sp[:, low].sum(1) > 0.5 * sp.sum(1)) & (ap[:, low].mean(1) < 0.5)  # not a sibilant or noise
    nucleus = voiced & (energy > energy[voiced].max() - 12)
    start, end = _longest_run(nucleus & vowel_like if (nucleus & vowel_like).any() else nucleus)
    audible = np.flatnonzero(energy > energy[voiced].max() - 45)
    first, last = min(int(audible[0]), start), max(int(audible[-1]) + 1, end)
    last = min(last, end + int(150 / FRAME_MS))  # codas longer than 150 ms are release tails
    return Syllable(sp[first:last], ap[first:last], voiced[first:last], start - first, end - first)


def _fill_gaps(mask: np.ndarray, frames: int) -> np.ndarray:
    """``mask`` with runs of at most ``frames`` False frames between True frames set True (voicing dropouts)."""
    out = mask.copy()
    idx = np.flatnonzero(mask)
    for a, b in zip(idx[:-1], idx[1:]):
        if 1 < b - a <= frames + 1:
            out[a:b] = True
    return out


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """``(start, end)`` of the longest run of True in ``mask`` (which holds at least one)."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    k = int(np.argmax(ends - starts))
    return int(starts[k]), int(ends[k])


def stretch_index(n: int, length: int) -> np.ndarray:
    """Frame positions (floats) into a nucleus of ``n`` frames for ``length`` output frames: first and
    last quarters at natural speed, the middle stretched (or everything squeezed when too short)."""
    q = max(1, n // 4)
    if length <= 2 * q or n < 3:
        return np.linspace(0, n - 1, length)
    middle = np.linspace(q, n - 1 - q, length - 2 * q)
    return np.concatenate([np.arange(q), middle, n - q + np.arange(q)]).astype(np.float64)


def _frames(a: np.ndarray, pos: np.ndarray) -> np.ndarray:
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(a) - 1)
    w = (pos - lo)[:, None]
    return a[lo] * (1 - w) + a[hi] * w


@dataclasses.dataclass(frozen=True)
class Singer:
    """Who sings: ``gender`` (``"male"``/``"female"``), espeak ``voice`` and ``pitch``, lyric ``language``,
    spectral-envelope ``warp`` factor and ``breath`` (0-1, added aperiodicity)."""

    gender: str
    voice: str
    pitch: int
    language: str
    warp: float
    breath: float


def random_singer(rng: np.random.Generator, gender: str | None = None, language: str | None = None) -> Singer:
    gender = gender or str(rng.choice(["male", "female"]))
    language = language or str(rng.choice(list(LYRICS), p=[0.3, 0.15, 0.12, 0.12, 0.1, 0.06, 0.15]))
    espeak_language = VOCALISE_VOICE if language == "vocalise" else language
    return Singer(gender, f"{espeak_language}+{rng.choice(VARIANTS[gender])}", ESPEAK_PITCH[gender],
                  language, float(rng.uniform(*WARP[gender])), float(rng.uniform(0.0, 0.35)))


def melody(rng: np.random.Generator, gender: str, seconds: float, tonic: int | None = None) -> list[Note]:
    """A sung line over ``seconds``: phrases of 1.5-4 s separated by breaths, mostly stepwise in a
    major or minor scale, an octave or so inside the ``gender``'s range."""
    lo, hi = RANGES[gender]
    tonic = int(rng.integers(0, 12)) if tonic is None else tonic
    scale = (0, 2, 4, 5, 7, 9, 11) if rng.random() < 0.6 else (0, 2, 3, 5, 7, 8, 10)
    low = int(rng.integers(lo, hi - 11))
    pitches = [p for p in range(low, min(hi, low + int(rng.integers(9, 16))) + 1) if (p - tonic) % 12 in scale]
    beat = 60.0 / float(rng.uniform(60, 150))
    lengths, weights = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 4.0]), np.array([0.2, 0.3, 0.12, 0.2, 0.1, 0.08])
    notes: list[Note] = []
    t = float(rng.uniform(0.0, 0.4))
    idx = int(rng.integers(0, len(pitches)))
    phrase_end = t + float(rng.uniform(1.5, 4.0))
    while t < seconds - 0.1:
        dur = max(0.12, float(rng.choice(lengths, p=weights)) * beat)
        idx = int(np.clip(idx + rng.choice([-3, -2, -1, -1, 0, 1, 1, 2, 3, 4]), 0, len(pitches) - 1))
        notes.append(Note(pitches[idx], t, min(dur, seconds - t), int(rng.integers(70, 120))))
        t += dur
        if t > phrase_end:  # a breath
            t += float(rng.uniform(0.2, 0.7))
            phrase_end = t + float(rng.uniform(1.5, 4.0))
    return notes


def pitch_contour(rng: np.random.Generator, notes: list[Note], frames: int) -> np.ndarray:
    """The sung f0 of ``notes``, hz per 5 ms frame ``float64 [frames]``, held through rests; see the
    module docstring (portamento, scoops, vibrato, drift, jitter)."""
    import scipy.signal  # here: scipy takes most of a second to load, the command line's --help none

    fp = FRAME_MS / 1000
    cents = np.full(frames, 100.0 * notes[0].pitch)
    for prev, note in zip([None] + notes[:-1], notes):
        a = int(round(note.start / fp))
        cents[a:] = 100.0 * note.pitch
        legato = prev is not None and note.start - (prev.start + prev.duration) < 0.05
        if legato:
            glide = int(round(rng.uniform(0.03, 0.15) / fp))
            lo, hi = max(0, a - glide // 2), min(frames, a + glide - glide // 2)
            u = (np.arange(lo, hi) - lo + 0.5) / max(1, hi - lo)
            cents[lo:hi] = 100.0 * (prev.pitch + (note.pitch - prev.pitch) * (1 - np.cos(np.pi * u)) / 2)
        elif rng.random() < 0.4:  # scoop up into a phrase's first note
            n = int(round(rng.uniform(0.05, 0.12) / fp))
            depth = float(rng.uniform(30, 100))
            end = min(frames, a + n)
            cents[a:end] -= depth * (1 - (np.arange(end - a) + 0.5) / n) ** 2
    vib = np.zeros(frames)
    for note in notes:
        a, b = int(round(note.start / fp)), min(frames, int(round((note.start + note.duration) / fp)))
        delay = float(rng.uniform(0.1, 0.35))
        if note.duration < delay + 0.15 or b <= a:
            continue
        t = (np.arange(b - a)) * fp
        rate = float(rng.uniform(4.5, 6.5)) * (1 + 0.04 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * t))
        depth = float(rng.uniform(20, 80))
        ramp = np.clip((t - delay) / float(rng.uniform(0.15, 0.4)), 0, 1)
        vib[a:b] = depth * ramp * np.sin(2 * np.pi * np.cumsum(rate) * fp)
    drift = scipy.signal.sosfiltfilt(scipy.signal.butter(2, 1.0, fs=1 / fp, output="sos"), rng.standard_normal(frames))
    drift *= float(rng.uniform(3, 10)) / (drift.std() + 1e-9)
    jitter = scipy.signal.sosfiltfilt(scipy.signal.butter(2, 20.0, fs=1 / fp, output="sos"), rng.standard_normal(frames))
    jitter *= 2.0 / (jitter.std() + 1e-9)
    return 440.0 * 2 ** ((cents + vib + drift + jitter - 6900.0) / 1200.0)


def _lyrics(rng: np.random.Generator, singer: Singer, n_notes: int) -> list[str | None]:
    """One word per note; ``None`` continues the previous word (melisma)."""
    words: list[str | None] = []
    while len(words) < n_notes:
        words.append(str(rng.choice(LYRICS[singer.language])))
        if rng.random() < 0.15:
            words += [None] * int(rng.integers(1, 3))
    return words[:n_notes]


def _level_db(rng: np.random.Generator, notes: list[Note], frames: int) -> np.ndarray:
    """Level per frame, dB: a phrase arc, velocity accents, swells on long notes."""
    fp = FRAME_MS / 1000
    t = np.arange(frames) * fp
    db = 3.0 * np.sin(np.pi * t / (frames * fp)) * float(rng.uniform(0.5, 1.5))
    for note in notes:
        a, b = int(round(note.start / fp)), min(frames, int(round((note.start + note.duration) / fp)))
        u = np.linspace(0, 1, max(1, b - a))
        swell = float(rng.uniform(-3, 5)) * np.sin(np.pi * u) if note.duration > 0.6 else 0.0
        db[a:b] += (note.velocity - 100) / 6.0 + swell
    return db


def sing_world(rng: np.random.Generator, notes: list[Note], singer: Singer, seconds: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """One voice singing ``notes``: ``(audio float32 [seconds * 22050], f0 hz per 5 ms frame, 0 where unvoiced)``."""
    fp = FRAME_MS / 1000
    frames = int(np.ceil(seconds / fp)) + 1
    first = analyse("la", singer.voice, singer.pitch)
    bins = first.sp.shape[1]
    sp = np.full((frames, bins), 1e-16)
    ap = np.ones((frames, bins))
    voiced = np.zeros(frames, bool)
    words = _lyrics(rng, singer, len(notes))
    # group notes under their words: (word, first note, last note)
    groups = []
    for i, word in enumerate(words):
        if word is None and groups and notes[i].start - (notes[i - 1].start + notes[i - 1].duration) < 0.05:
            groups[-1][2] = i
        else:
            groups.append([word or str(rng.choice(LYRICS[singer.language])), i, i])
    prev_a = 0
    for word, i, j in groups:
        syl = analyse(word, singer.voice, singer.pitch)
        a = int(round(notes[i].start / fp))
        b = min(frames, int(round((notes[j].start + notes[j].duration) / fp)))
        if b - a < 2:
            continue
        # onset consonants before the beat, taking at most half of the previous note
        onset_at = max(a - syl.start, (prev_a + a) // 2, 0)
        coda = min(len(syl.sp) - syl.end, (b - a) // 3)
        pos = np.concatenate([
            np.arange(syl.start - (a - onset_at), syl.start, dtype=np.float64),
            syl.start + stretch_index(syl.end - syl.start, b - a - coda),
            syl.end + np.arange(coda, dtype=np.float64),
        ]).clip(0, len(syl.sp) - 1)
        sp[onset_at:b] = _frames(syl.sp, pos)
        ap[onset_at:b] = _frames(syl.ap, pos)
        voiced[onset_at:b] = _frames(syl.voiced.astype(np.float64)[:, None], pos)[:, 0] > 0.5
        prev_a = a
    # colour: formant warp, breathiness above 2 kHz, levels
    k = np.arange(bins)
    src = np.clip(k / singer.warp, 0, bins - 1)
    sp = _frames(sp.T, src).T
    ap = _frames(ap.T, src).T
    high = k * WORLD_SR / (2 * (bins - 1)) > 2000
    ap[:, high] += singer.breath * (1 - ap[:, high])
    sp *= 10 ** (_level_db(rng, notes, frames) / 10)[:, None]
    f0 = np.where(voiced, pitch_contour(rng, notes, frames), 0.0)
    world = _world()
    audio = world.synthesize(np.ascontiguousarray(f0), np.ascontiguousarray(sp), np.ascontiguousarray(ap.clip(0, 1)),
                             WORLD_SR, FRAME_MS)
    n = int(round(seconds * WORLD_SR))
    return np.pad(audio, (0, max(0, n - len(audio))))[:n].astype(np.float32), f0


def _air(rng: np.random.Generator, audio: np.ndarray, sr: int, notes: list[Note]) -> np.ndarray:
    """Breath intakes before phrases and a faint air band above 5 kHz that follows the voice's level."""
    import scipy.signal  # here: scipy takes most of a second to load, the command line's --help none

    n = len(audio)
    env = scipy.signal.sosfiltfilt(scipy.signal.butter(1, 20, fs=sr, output="sos"), np.abs(audio))
    hiss = scipy.signal.sosfilt(scipy.signal.butter(2, 5000, "highpass", fs=sr, output="sos"), rng.standard_normal(n))
    out = audio + hiss * env * float(rng.uniform(0.02, 0.08))
    breath_sos = scipy.signal.butter(2, [800, 6000], "bandpass", fs=sr, output="sos")
    for prev, note in zip(notes[:-1], notes[1:]):
        gap = note.start - (prev.start + prev.duration)
        if gap > 0.2 and rng.random() < 0.7:
            length = int(min(gap, 0.4) * sr)
            start = int(note.start * sr) - length
            shape = np.sin(np.pi * np.linspace(0, 1, length)) ** 2
            burst = scipy.signal.sosfilt(breath_sos, rng.standard_normal(length)) * shape
            out[max(0, start) : start + length] += burst[-min(length, start + length):] * float(
                rng.uniform(0.01, 0.04)) * np.abs(audio).max() / (np.abs(burst).max() + 1e-9)
    return out.astype(np.float32)


def sing(rng: np.random.Generator, seconds: float, sr: int, singer: Singer | None = None,
         notes: list[Note] | None = None, layers: int = 1) -> tuple[np.ndarray, list[Note], np.ndarray]:
    """A sung stem: ``(audio float32 [seconds * sr], notes, f0 of the first layer in hz per 5 ms frame,
    0 where unvoiced)``. ``layers`` > 1 adds singers of the same range on the same line (a double or
    a small group), each with its own timing (+-20 ms), detuning (+-10 cents) and vibrato."""
    singer = singer or random_singer(rng)
    notes = notes or melody(rng, singer.gender, seconds)
    audio, f0 = sing_world(rng, notes, singer, seconds)
    mix = audio.copy()
    for _ in range(layers - 1):
        other = random_singer(rng, singer.gender, singer.language)
        shift, detune = float(rng.uniform(-0.02, 0.02)), float(rng.uniform(-10, 10))
        moved = [dataclasses.replace(n, start=max(0.0, n.start + shift)) for n in notes]
        layer, _ = sing_world(rng, moved, other, seconds)
        if detune:
            layer = _detune(layer, detune)
        mix += layer * float(rng.uniform(0.5, 1.0))
    out = resample(mix, WORLD_SR, sr)
    n = int(round(seconds * sr))
    out = np.pad(out, (0, max(0, n - len(out))))[:n]
    return _air(rng, out, sr, notes), notes, f0


def _detune(audio: np.ndarray, cents: float) -> np.ndarray:
    """Shift pitch and tempo together by ``cents`` (resampling), length kept."""
    ratio = 2 ** (cents / 1200)
    pos = np.arange(len(audio)) * ratio
    return np.interp(pos, np.arange(len(audio)), audio, right=0.0).astype(np.float32)
