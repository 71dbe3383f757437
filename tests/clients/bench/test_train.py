"""The training benchmarks run and report their figures (speed itself is not asserted)."""

from __future__ import annotations

import argparse

import pytest
import torch

from instrumentd.pipeline.errors import ParameterError
from instrumentd.clients.bench import train as bench


def test_harmonic_clips_are_voiced_notes():
    clips = bench.harmonic_clips(2, seconds=1.0)
    assert clips.shape == (2, 44100) and clips.dtype.name == "float32"
    assert 0.29 < abs(clips).max() <= 0.3 + 1e-6


@pytest.mark.slow
def test_quick_benches_report():
    result = bench.prepare(torch.device("cpu"), True, argparse.Namespace())
    assert [r["batch"] for r in result.rows[:2]] == [4, 16] and result.summary["clips_per_s"] > 0
    whole = result.summary["end_to_end"]  # instrumentd prepare on 22 WAV files in IRMAS's layout
    assert whole["clips"] == 22 and whole["clips_per_s"] > 0
    assert result.rows[2]["stage"] == "prepare end to end (22 WAV files)"
    result = bench.train_bench(torch.device("cpu"), True, argparse.Namespace())
    assert result.rows[0]["clips"] == 48 and result.summary["irmas_100_epochs_s"] > 0
    timed = bench.train_bench(torch.device("cpu"), True, argparse.Namespace(epochs=2))
    assert timed.summary["epochs"] == 2 and timed.summary["wall_s"] > timed.summary["epoch_s"]
    with pytest.raises(ParameterError, match="--epochs must be at least 1, got 0"):
        bench.train_bench(torch.device("cpu"), True, argparse.Namespace(epochs=0))
