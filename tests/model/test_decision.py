"""'No predominant instrument': window reasons, clip verdicts, the threshold chosen on validation."""

import numpy as np
import pytest

from instrumentd.model.classes import CLASSES
from instrumentd.model.decision import Decision, choose_minimum, clip_verdict, window_reasons


def probs(*tops: tuple[int, float]) -> np.ndarray:
    """One window per ``(class, top probability)``; the rest spread evenly over the other classes."""
    out = np.zeros((len(tops), len(CLASSES)))
    for i, (k, p) in enumerate(tops):
        out[i] = (1 - p) / (len(CLASSES) - 1)
        out[i, k] = p
    return out


def test_window_reasons():
    decision = Decision(min_confidence=0.4, min_level_db=-60.0)
    p = probs((0, 0.9), (0, 0.2), (0, 0.2), (3, 0.95))
    levels = np.array([-20.0, -20.0, -20.0, -70.0])
    assert window_reasons(p, levels, decision) == [None, "no instrument", "no instrument", "silence"]
    speech = np.array([False, True, False, True])
    assert window_reasons(p, levels, decision, speech) == [None, "speech", "no instrument", "silence"]
    assert window_reasons(p[:1], np.array([np.nan]), decision) == ["silence"]


def test_clip_verdict_names_s2_labels_over_named_windows():
    decision = Decision(min_confidence=0.4, min_named=0.5)
    p = probs((0, 0.9), (1, 0.9), (0, 0.9), (5, 0.2))
    reasons = window_reasons(p, np.full(4, -20.0), decision)
    scores, labels, none = clip_verdict(p, reasons, CLASSES, decision)
    assert none is None and labels == ["cel", "cla"]  # S2: cla 0.92 / cel 1.81 >= 0.5; org's window is unsure
    assert scores == pytest.approx(p[:3].mean(axis=0))
    assert scores.sum() == pytest.approx(1.0)


def test_clip_verdict_without_enough_named_windows():
    decision = Decision(min_confidence=0.4, min_named=0.5)
    p = probs((0, 0.9), (2, 0.2), (2, 0.2))
    reasons = window_reasons(p, np.full(3, -20.0), decision, np.array([False, True, True]))
    # silent windows do not count against a clip: one named window of one audible window is enough
    fading = clip_verdict(p, [None, "silence", "silence"], CLASSES, decision)
    assert fading[1] == ["cel"] and fading[2] is None
    scores, labels, none = clip_verdict(p, reasons, CLASSES, decision)
    assert labels == [] and none == "speech"
    assert scores == pytest.approx(p[:1].mean(axis=0))
    assert clip_verdict(np.zeros((0, len(CLASSES))), [], CLASSES, decision)[1:] == ([], "silence")


def test_windows_with_too_few_pitched_frames_name_no_instrument():
    decision = Decision(min_confidence=0.3, min_voiced=0.2)
    p = np.full((3, len(CLASSES)), 0.02)
    p[:, 5] = 0.8  # confident "org" on all three
    levels = np.array([-20.0, -20.0, -20.0])
    voiced = np.array([0.9, 0.05, 0.2])
    assert window_reasons(p, levels, decision, voiced=voiced) == [None, "no instrument", None]
    assert window_reasons(p, levels, decision, speech=np.array([False, True, False]), voiced=voiced)[1] == "speech"
    assert window_reasons(p, levels, decision) == [None, None, None]  # voiced share not known: no gate


def test_threshold_keeps_the_asked_share_of_music():
    music = np.linspace(0.3, 1.0, 100)
    t = choose_minimum(music, keep_music=0.97)
    assert (music >= t).mean() == pytest.approx(0.97, abs=0.011)
    assert choose_minimum(np.array([]), 0.97) == 0.0


def test_decision_from_checkpoint_metadata():
    assert Decision.from_meta({}) == Decision()
    assert Decision.from_meta({"decision": {"min_confidence": 0.37, "bogus": 1}}).min_confidence == 0.37
    assert Decision.from_meta({"decision": ["not", "a", "dict"]}) == Decision()
    assert Decision.from_meta({"decision": {"min_confidence": "high"}}) == Decision()
