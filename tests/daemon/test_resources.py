"""Start-up memory check: what the streams need, against this machine's MemAvailable."""

import pytest

from instrumentd.daemon.config import Config
from instrumentd.daemon.resources import (
    PROCESS_OVERHEAD, STREAM_OVERHEAD, ResourceError, available_bytes, check_memory, needed_bytes)


def test_needed_bytes_is_rings_state_process_and_one_queue():
    cfg = Config(ring_seconds=10.0, sndhwm=1000)
    ring = 10 * 44100 * 4
    assert needed_bytes(cfg, 3) == 3 * (ring + STREAM_OVERHEAD) + PROCESS_OVERHEAD + 1000 * 1024


def test_available_bytes_reads_meminfo():
    free = available_bytes()
    assert free is not None and 0 < free < 2**50  # /proc/meminfo exists on Linux


def test_streams_that_fit_pass_and_too_many_are_named():
    cfg = Config()
    check_memory(cfg, 1)
    per_stream = needed_bytes(cfg, 2) - needed_bytes(cfg, 1)
    too_many = available_bytes() // per_stream + 2
    with pytest.raises(ResourceError, match=rf"{too_many} stream\(s\) with ring_seconds = .* GiB is free: lower"):
        check_memory(cfg, too_many)
