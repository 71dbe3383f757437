"""Benchmark timing: the median of at least 3 timed calls after the warm-up, in seconds."""

import time

import pytest
import torch

from instrumentd.pipeline.timing import sync, time_call


def test_time_call_measures_a_known_sleep_after_its_warmup():
    calls = []

    def sleep_10ms():
        calls.append(1)
        time.sleep(0.01)

    seconds = time_call(sleep_10ms, torch.device("cpu"), min_seconds=0.0, warmup=2)
    assert len(calls) == 2 + 3  # warm-up, then the minimum of 3 timed calls
    assert 0.01 <= seconds < 0.5  # the sleep, and whatever a busy machine adds to it


def test_time_call_repeats_until_min_seconds():
    calls = []
    time_call(lambda: calls.append(time.sleep(0.005)), torch.device("cpu"), min_seconds=0.1, warmup=0)
    assert len(calls) >= 0.1 / 0.005 * 0.5


@pytest.mark.gpu
def test_sync_waits_for_the_gpus_queue():
    x = torch.randn(4096, 4096, device="cuda")
    event = torch.cuda.Event()
    for _ in range(20):
        x = x @ x / 64
    event.record()
    sync(torch.device("cuda"))
    assert event.query()  # everything queued before the sync has run
