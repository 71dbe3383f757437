"""``bench model``: every path of the plan is built, checked against eager fp32 and timed (speed is not asserted)."""

import argparse

import pytest
import torch

from instrumentd.clients.bench.model import model


@pytest.mark.slow
def test_quick_cpu_run_checks_each_path_against_eager():
    result = model(torch.device("cpu"), True, argparse.Namespace())
    summary = result.summary
    assert {r["path"] for r in result.rows} == set(summary["paths"]) and "fp32+eager" in summary["paths"]
    assert [r["batch"] for r in result.rows if r["path"] == "fp32+eager"] == [1, 8]
    eager = summary["paths"]["fp32+eager"]
    assert eager["top1_agreement"] == 1.0 and eager["max_prob_diff"] == 0.0 and eager["ok"]
    assert summary["windows_per_s"] >= summary["eager_fp32_windows_per_s"] > 0
