"""``bench pitch``: agreement with librosa.pyin frame by frame, and a quick CPU run (speed is not asserted)."""

import argparse

import numpy as np
import pytest
import torch

from instrumentd.clients.bench.pitch import agreement, pitch


def test_agreement_counts_voicing_and_cents_within_10():
    f0_ref = np.array([100.0, 200.0, 300.0, 400.0])
    voiced_ref = np.array([True, True, True, False])
    f0 = np.array([100.0, 200.0 * 2 ** (20 / 1200), 300.0 * 2 ** (5 / 1200), 400.0])
    voiced = np.array([True, True, True, True])
    voicing, cents = agreement((f0_ref, voiced_ref), (f0, voiced))
    assert voicing == 0.75  # the last frame: voiced against unvoiced
    assert cents == pytest.approx(2 / 3)  # of the three voiced in both, 20 cents off fails


@pytest.mark.slow
def test_quick_cpu_run_agrees_with_librosa():
    threads = torch.get_num_threads()
    result = pitch(torch.device("cpu"), True, argparse.Namespace())
    assert result.summary["n_seconds"] == 6.0 and len(result.rows) == 1
    assert result.summary["voicing_agreement"] > 0.95 and result.summary["cents_within_10"] > 0.95
    assert result.summary["torch_threads"] == 1  # measured on one thread, as librosa runs
    assert torch.get_num_threads() == threads  # and the threads given back
