"""The IRMAS corpus as distributed, and synthetic corpora written in its layout.

Training part: ``IRMAS-TrainingData/<cls>/[<cls>]([dru]|[nod])?[<genre>]NNNN__K.wav``, 3 s excerpts
with one predominant class, the folder's. Test parts: ``IRMAS-TestingData-Part{1,2,3}/**/NAME.wav``,
5-20 s, each with ``NAME.txt`` listing its predominant classes, one per line, tab-terminated.
A corpus written by :mod:`instrumentd.training.synth` also has ``synth.csv``, which records the
SoundFont of every clip; clips of real recordings have the SoundFont ``""``.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.errors import InstrumentdError

TRAIN_DIR = "IRMAS-TrainingData"
TEST_PARTS = ("IRMAS-TestingData-Part1", "IRMAS-TestingData-Part2", "IRMAS-TestingData-Part3")
MANIFEST = "synth.csv"
TRAIN_NAME = re.compile(
    r"^\[(?P<cls>[a-z]{3})\](?:\[(?P<drums>dru|nod)\])?\[(?P<genre>[a-z_]+)\](?P<number>\d+)__(?P<excerpt>\d+)\.wav$"
)


class CorpusError(InstrumentdError):
    """A corpus folder, file name or label file that does not follow the IRMAS layout."""


@dataclasses.dataclass(frozen=True)
class Clip:
    """One audio file of a corpus with its predominant classes.

    ``name`` is the path relative to the corpus root (unique, used as the clip's identifier);
    ``soundfont`` is ``""`` for real recordings.
    """

    path: Path
    name: str
    labels: tuple[str, ...]
    soundfont: str = ""


def _root_of(path: Path, part: str) -> Path:
    """The corpus root for ``path``, which may be the root itself or its ``part`` folder."""
    return path.parent if path.name == part else path


def read_manifest(root: str | Path) -> dict[str, str]:
    """``{relative path: SoundFont}`` from ``root/synth.csv``; empty when the corpus has none."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"path", "soundfont"} <= set(rows[0]):
        raise CorpusError(f"{path}: needs the columns 'path' and 'soundfont'")
    return {r["path"]: r["soundfont"] for r in rows}


def training_clips(corpus: str | Path, classes: tuple[str, ...] = CLASSES) -> list[Clip]:
    """Every training clip under ``corpus`` (the root, or ``IRMAS-TrainingData`` itself), sorted.

    Raises
    ------
    CorpusError
        No training folder, a folder that is not a class, a file whose name does not follow the
        IRMAS pattern or names another class than its folder, or no clip at all.
    """
    corpus = Path(corpus)
    root = _root_of(corpus, TRAIN_DIR)
    train = root / TRAIN_DIR
    if not train.is_dir():
        raise CorpusError(f"{corpus}: no {TRAIN_DIR} folder (expected {train})")
    fonts = read_manifest(root)
    clips = []
    for folder in sorted(p for p in train.iterdir() if p.is_dir()):
        if folder.name not in classes:
            raise CorpusError(f"{folder}: not a class folder; classes are {' '.join(classes)}")
        for wav in sorted(folder.glob("*.wav")):
            m = TRAIN_NAME.match(wav.name)
            if m is None:
                raise CorpusError(f"{wav}: name does not follow [cls][dru|nod][genre]NNNN__K.wav")
            if m["cls"] != folder.name:
                raise CorpusError(f"{wav}: name says [{m['cls']}] but it lies in the {folder.name} folder")
            name = wav.relative_to(root).as_posix()
            clips.append(Clip(wav, name, (folder.name,), fonts.get(name, "")))
    if not clips:
        raise CorpusError(f"{train}: no .wav files in any class folder")
    return clips


def read_labels(path: str | Path, classes: tuple[str, ...] = CLASSES, allow_empty: bool = False) -> tuple[str, ...]:
    """The classes listed in an IRMAS label file (one per line, tab-terminated), in class order.
    ``allow_empty``: an empty file means "no predominant instrument" (check sets), not an error."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: label file missing")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise CorpusError(f"{path}: label file is not text") from None
    labels = {line.strip() for line in lines if line.strip()}
    unknown = sorted(labels - set(classes))
    if unknown:
        raise CorpusError(f"{path}: unknown label {unknown[0]!r}; classes are {' '.join(classes)}")
    if not labels and not allow_empty:
        raise CorpusError(f"{path}: label file lists no class")
    return tuple(c for c in classes if c in labels)


def test_clips(corpus: str | Path, classes: tuple[str, ...] = CLASSES) -> list[Clip]:
    """Every test clip under ``corpus``, sorted: the IRMAS root or one ``IRMAS-TestingData-PartN``
    folder, or else any folder of ``NAME.wav`` + ``NAME.txt`` pairs (real recordings, check sets),
    where an empty label file means the clip has no predominant instrument.

    Raises
    ------
    CorpusError
        No test part and no labelled .wav, a .wav without its .txt, a label file naming an unknown
        class, or no clip at all.
    """
    corpus = Path(corpus)
    if corpus.name in TEST_PARTS:
        root, parts = corpus.parent, [corpus]
    else:
        root, parts = corpus, [corpus / p for p in TEST_PARTS if (corpus / p).is_dir()]
    flat = not parts and corpus.is_dir() and any(w.with_suffix(".txt").is_file() for w in corpus.rglob("*.wav"))
    if flat:
        root, parts = corpus, [corpus]
    if not parts:
        raise CorpusError(f"{corpus}: no test part (expected one of {', '.join(TEST_PARTS)}) "
                          "and no NAME.wav with its NAME.txt")
    fonts = read_manifest(root)
    clips = []
    for part in parts:
        for wav in sorted(part.rglob("*.wav")):
            name = wav.relative_to(root).as_posix()
            labels = read_labels(wav.with_suffix(".txt"), classes, allow_empty=flat)
            clips.append(Clip(wav, name, labels, fonts.get(name, "")))
    if not clips:
        raise CorpusError(f"{', '.join(map(str, parts))}: no .wav files")
    return clips
