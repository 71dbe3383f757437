"""Fixtures: a tiny corpus in the real IRMAS layout and naming, written from synthetic tones; a SoundFont
to render with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from instrumentd.training.render import RenderError, find_soundfont

SR = 44100


def harmonic(f0: float, seconds: float, seed: int = 0, channels: int = 2) -> np.ndarray:
    """``float32 [samples, channels]``: 4 harmonics of ``f0`` hz plus a little noise (IRMAS files are stereo)."""
    t = np.arange(int(round(seconds * SR))) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5))
    x = 0.3 * x / np.abs(x).max() + 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


TRAIN_FILES = {  # class folder -> IRMAS training names, with and without the [dru]/[nod] tag
    "cel": ["[cel][cla]0001__1.wav", "[cel][cla]0001__2.wav", "[cel][nod][jaz_blu]0007__3.wav"],
    "flu": ["[flu][cla]0100__1.wav", "[flu][dru][pop_roc]0101__2.wav", "[flu][nod][cou_fol]0102__1.wav"],
    "voi": ["[voi][pop_roc]0200__1.wav", "[voi][dru][lat_sou]0201__1.wav", "[voi][jaz_blu]0202__2.wav"],
}
TEST_FILES = {  # part folder / relative name -> labels
    "IRMAS-TestingData-Part1/Part1/(02) dont kill the whale-1": ("gel", "voi"),
    "IRMAS-TestingData-Part1/Part1/01 - Lost-7": ("pia",),
    "IRMAS-TestingData-Part2/IRTestingData-Part2/02 - Cello song-3": ("cel", "pia", "vio"),
    "IRMAS-TestingData-Part3/Part3/Song 4-1": ("flu",),
}
F0 = {"cel": 110.0, "flu": 880.0, "voi": 330.0}


def write_irmas(root: Path) -> Path:
    """Write the fixture corpus under ``root``: 9 training clips (3 s) and 4 multi-label test clips (5-7 s)."""
    for cls, names in TRAIN_FILES.items():
        (root / "IRMAS-TrainingData" / cls).mkdir(parents=True)
        for i, name in enumerate(names):
            soundfile.write(root / "IRMAS-TrainingData" / cls / name, harmonic(F0[cls] * (1 + 0.05 * i), 3.0, i), SR,
                            subtype="PCM_16")
    for i, (name, labels) in enumerate(TEST_FILES.items()):
        wav = root / (name + ".wav")
        wav.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(wav, harmonic(220.0 + 50 * i, 5.0 + i * 0.7, i), SR, subtype="PCM_16")
        wav.with_suffix(".txt").write_text("".join(f"{c}\t\n" for c in labels))
    return root


@pytest.fixture
def irmas(tmp_path: Path) -> Path:
    """A fresh copy of the fixture corpus (tests may break it)."""
    return write_irmas(tmp_path / "irmas")


@pytest.fixture(scope="session")
def irmas_shared(tmp_path_factory) -> Path:
    """The fixture corpus, shared: tests must not change it."""
    return write_irmas(tmp_path_factory.mktemp("irmas-shared"))


@pytest.fixture(scope="session")
def prepared(irmas_shared, tmp_path_factory) -> Path:
    """Training and test features of the shared corpus, prepared once (torch pitch engine)."""
    from instrumentd.pipeline import DEFAULT, FeatureExtractor
    from instrumentd.training.prepare import prepare

    out = tmp_path_factory.mktemp("features")
    extractor = FeatureExtractor(DEFAULT, "torch")
    prepare(irmas_shared, out, "train", extractor, "torch", batch_size=16)
    prepare(irmas_shared, out, "test", extractor, "torch", batch_size=16)
    return out


def write_stem_bank(root: Path, per_class: int = 2, seconds: float = 3.5) -> Path:
    """A stem bank in ``instrumentd synth-stems``' layout, of tones: ``per_class`` solo stems a class
    (two banks, "a" and "b"), two accompaniment, drum and non-music stems (FLAC)."""
    import json

    from instrumentd.model.classes import CLASSES

    stems = []

    def add(rel: str, audio: np.ndarray, **entry) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(root / rel, audio, SR)
        stems.append({"path": rel, "seconds": seconds, **entry})

    for k, cls in enumerate(CLASSES):
        for i in range(per_class):
            bank = "ab"[i % 2]
            add(f"pred/{bank}/{cls}/{i}.flac", harmonic(110.0 * 2 ** (k / 6), seconds, i, 1)[:, 0],
                role="pred", cls=cls, bank=bank)
    noise = np.random.default_rng(1).standard_normal(int(seconds * SR)).astype(np.float32)
    for i in range(2):
        add(f"acc/a/{i}.flac", harmonic(196.0 + 20 * i, seconds, i, 1)[:, 0], role="acc", cls=None, bank="a")
        add(f"drums/a/{i}.flac", 0.3 * noise * (np.arange(len(noise)) % 11025 < 800), role="drums", cls=None, bank="a")
        add(f"none/noise/{i}.flac", 0.1 * noise, role="none", cls=None, bank="gen", kind="noise")
    (root / "index.json").write_text(json.dumps({"sample_rate": SR, "stems": stems}))
    return root


@pytest.fixture(scope="session")
def stem_bank(tmp_path_factory) -> Path:
    """A tiny stem bank of tones, shared: tests must not change it (rooms.npy is written on first use)."""
    return write_stem_bank(tmp_path_factory.mktemp("stems"))


@pytest.fixture(scope="module")
def timgm6mb(fluidsynth_available) -> Path:
    """The TimGM6mb SoundFont (small, every GM program), for tests that render MIDI through fluidsynth."""
    try:
        return find_soundfont("timgm6mb")
    except RenderError:
        pytest.skip("TimGM6mb not installed (make system-deps)")
