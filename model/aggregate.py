"""Clip-level decisions from window probabilities (Han et al. 2017, strategy "S2")."""

from __future__ import annotations

import numpy as np

THRESHOLD = 0.5  # fixed before any test set is seen


def s2_scores(window_probs: np.ndarray) -> np.ndarray:
    """``window_probs: [n_windows, n_classes]`` -> ``[n_classes]``: class-wise sum divided by its maximum."""
    total = np.asarray(window_probs, dtype=np.float64).sum(axis=0)
    peak = total.max()
    return total / peak if peak > 0 else total


def labels_from_scores(scores: np.ndarray, classes: tuple[str, ...], threshold: float = THRESHOLD) -> list[str]:
    """Classes whose aggregated score reaches ``threshold``, in class order."""
    return [c for c, s in zip(classes, scores) if s >= threshold]
