""""No predominant instrument" as an answer: which windows name an instrument, and what a clip is.

A window names no instrument when it is too quiet (its RMS under ``min_level_db`` dBFS: "silence"),
when under ``min_voiced`` of its frames have a pitch (drums or percussion alone, most noises and
environmental sounds: the pitch mask the network reads is all but empty), or when the network's top
probability is under ``min_confidence``: a network trained with non-music clips against a uniform
target (training/audio_augment.py) spreads its belief over the classes when it hears speech, noise or
drums alone. Such a window's reason is "speech" when a speech detector says so (pipeline/speech.py),
"no instrument" otherwise.

A clip's scores are the mean probabilities of its windows that name an instrument (every window's
when none does): calibrated numbers, not S2's ratio to the top class, which always reads 1.00.
Its labels are S2's (Han et al. 2017) over those windows, with the usual threshold, but only when
at least ``min_named`` of its audible windows name an instrument (a note that dies away into
silence still counts); otherwise the clip has no label and the most frequent reason says why.

``min_confidence`` and ``min_voiced`` are chosen on validation clips when a checkpoint is trained
(stored in its metadata under ``decision``); checkpoints without them never reject on either.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Any

import numpy as np

from .aggregate import THRESHOLD, labels_from_scores, s2_scores

SILENCE = "silence"
SPEECH = "speech"
NO_INSTRUMENT = "no instrument"
REASONS = (SILENCE, SPEECH, NO_INSTRUMENT)


@dataclasses.dataclass(frozen=True)
class Decision:
    """The thresholds of the decision; see the module docstring."""

    min_confidence: float = 0.0  # top window probability needed to name an instrument
    min_level_db: float = -60.0  # dBFS RMS of a window under which it is silence
    min_voiced: float = 0.0  # share of a window's frames with a pitch needed to name an instrument
    min_named: float = 0.5  # share of a clip's audible windows that must name an instrument

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "Decision":
        """The decision stored in a checkpoint's metadata (defaults for the missing fields)."""
        stored = meta.get("decision") or {}
        if not isinstance(stored, dict):
            return cls()
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: float(v) for k, v in stored.items() if k in names and isinstance(v, (int, float))})

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def window_reasons(probs: np.ndarray, levels_db: np.ndarray, decision: Decision,
                   speech: np.ndarray | None = None, voiced: np.ndarray | None = None) -> list[str | None]:
    """Per window: ``None`` when it names an instrument, else the reason it does not.

    Parameters
    ----------
    probs : float [n, n_classes] softmax probabilities
    levels_db : float [n] window RMS, dBFS
    decision : thresholds
    speech : bool [n] or None, a speech detector's verdict on the windows (None: not asked)
    voiced : float [n] or None, the share of each window's frames with a pitch
        (pipeline/mask.py ``voiced_share``; None: not known, never rejects)
    """
    probs = np.asarray(probs, dtype=np.float64)
    top = probs.max(axis=1) if probs.size else np.zeros(len(probs))
    unpitched = np.zeros(len(probs), bool) if voiced is None else np.asarray(voiced) < decision.min_voiced
    out: list[str | None] = []
    for i in range(len(probs)):
        if not levels_db[i] >= decision.min_level_db:  # NaN (empty audio) is silence too
            out.append(SILENCE)
        elif top[i] < decision.min_confidence or unpitched[i]:
            out.append(SPEECH if speech is not None and bool(speech[i]) else NO_INSTRUMENT)
        else:
            out.append(None)
    return out


def clip_verdict(probs: np.ndarray, reasons: list[str | None], classes: tuple[str, ...], decision: Decision,
                 threshold: float = THRESHOLD) -> tuple[np.ndarray, list[str], str | None]:
    """``(scores [n_classes], labels, none_reason)`` of a clip from its windows' probabilities and reasons."""
    probs = np.asarray(probs, dtype=np.float64)
    named = np.array([r is None for r in reasons], dtype=bool)
    if len(probs) == 0:
        return np.zeros(len(classes)), [], SILENCE
    scores = probs[named].mean(axis=0) if named.any() else probs.mean(axis=0)
    audible = np.array([r != SILENCE for r in reasons], dtype=bool)
    if not named.any() or named.sum() < decision.min_named * audible.sum():
        counts = Counter(r for r in reasons if r is not None)
        return scores, [], counts.most_common(1)[0][0]
    return scores, labels_from_scores(s2_scores(probs[named]), classes, threshold), None


def choose_minimum(music_values: np.ndarray, keep_music: float = 0.97) -> float:
    """The highest threshold on a window figure (top probability, voiced share), so the most non-music
    windows rejected, that still names an instrument in ``keep_music`` of the music windows
    (``music_values: [n]``, their figures), rounded down to 4 decimals."""
    music_values = np.sort(np.asarray(music_values, dtype=np.float64))
    if len(music_values) == 0:
        return 0.0
    return math.floor(float(music_values[int(np.floor((1 - keep_music) * len(music_values)))]) * 1e4) / 1e4
