"""Rendering MIDI to audio with the fluidsynth program and a SoundFont."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from instrumentd.pipeline.audio import to_mono
from instrumentd.pipeline.errors import InstrumentdError, ParameterError

from .midi import Track, write

SOUNDFONT_DIRS = (Path("/usr/share/sounds/sf2"), Path("/usr/share/sounds/sf3"), Path("/usr/share/soundfonts"))
SOUNDFONTS = {
    "fluidr3": "FluidR3_GM.sf2",
    "timgm6mb": "TimGM6mb.sf2",
    "musescore": "MuseScore_General.sf3",
}
TRAINING_SOUNDFONTS = ("fluidr3", "timgm6mb")  # the others are kept for evaluation only


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


def find_soundfont(name: str) -> Path:
    """Path of a SoundFont by short name (``fluidr3``, ``timgm6mb``, ``musescore``) or by path."""
    if Path(name).is_file():
        return Path(name)
    filename = SOUNDFONTS.get(name, name)
    for d in SOUNDFONT_DIRS:
        if (d / filename).is_file():
            return d / filename
    raise RenderError(
        f"SoundFont {name!r} not found in {', '.join(map(str, SOUNDFONT_DIRS))}; "
        "install it (Debian: fluid-soundfont-gm, timgm6mb-soundfont, musescore-general-soundfont-small)"
    )


def render(tracks: list[Track], soundfont: str | Path, seconds: float, sr: int = 44100,
           tempo_bpm: float = 120.0, gain: float = 0.6) -> np.ndarray:
    """Render ``tracks`` with fluidsynth: ``float32 [round(seconds * sr)]`` mono, silence-padded or cut."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise RenderError("fluidsynth not found on PATH (Debian: apt-get install fluidsynth)")
    sf_path = find_soundfont(str(soundfont))
    with tempfile.TemporaryDirectory(prefix="instrumentd-render-") as tmp:
        mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        write(mid, tracks, tempo_bpm)
        cmd = [exe, "-ni", "-q", "-g", str(gain), "-r", str(sr), "-F", str(wav), "-o", "synth.reverb.active=0",
               "-o", "synth.chorus.active=0", str(sf_path), str(mid)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not wav.is_file():
            raise RenderError(f"fluidsynth failed ({proc.returncode}): {proc.stderr.strip()[:200]}")
        audio, file_sr = soundfile.read(str(wav), dtype="float32", always_2d=True)
    if file_sr != sr:
        raise RenderError(f"fluidsynth wrote {file_sr} hz, asked for {sr}")
    mono = to_mono(audio)
    n = int(round(seconds * sr))
    return np.pad(mono, (0, max(0, n - len(mono))))[:n].astype(np.float32)
