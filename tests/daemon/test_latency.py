"""The status heartbeat's p50/p99: each stream's newest windows binned, percentiles read from the bins."""

import numpy as np
import pytest

from instrumentd.daemon.latency import (CEILING_MS, CENTRES, FLOOR_MS, HISTORY, N_BINS, RATIO, LatencyHistory,
                                        bin_of, percentiles)


def test_a_latency_falls_in_the_bin_whose_edges_hold_it_and_reads_as_its_centre():
    for ms in (1.0, 1.04, 1.06, 3.3, 47.0, 99.99, 100.0, 263.5, 1000.0, 99_999.0):
        k = bin_of(ms)
        lo, hi = FLOOR_MS * RATIO ** (k - 1), FLOOR_MS * RATIO**k
        assert lo <= ms * (1 + 1e-12) and ms < hi * (1 + 1e-12), ms
        assert abs(CENTRES[k] / ms - 1) <= RATIO - 1, ms  # within a bin's width of the latency itself
    assert bin_of(0.0) == bin_of(0.7) == bin_of(float("nan")) == 0 and CENTRES[0] == FLOOR_MS / 2
    assert bin_of(CEILING_MS * 2) == bin_of(float("inf")) == N_BINS - 1 and CENTRES[-1] == CEILING_MS


@pytest.mark.parametrize("seed", range(3))
def test_percentiles_are_numpys_over_each_streams_newest_windows_to_a_bin(seed):
    """Streams with no window, a few, a ring not yet full, full, and wrapped two and three times: p50 and
    p99 within a bin (5 %) of ``np.percentile`` over each one's newest HISTORY latencies."""
    rng = np.random.default_rng(seed)
    histories, newest = [], []
    for n in (0, 1, 5, HISTORY - 1, HISTORY, 2 * HISTORY + 37, 3 * HISTORY):
        h = LatencyHistory()
        values = np.concatenate([rng.gamma(2.0, 40.0, n // 2), rng.gamma(5.0, 80.0, n - n // 2)])
        for ms in values:
            h.add(float(ms))
        histories.append(h)
        newest.append(values[-HISTORY:])
    got = percentiles(histories)
    assert got[0] == (None, None)
    for values, (p50, p99) in zip(newest[1:], got[1:]):
        want50, want99 = np.percentile(values, [50, 99])
        assert abs(p50 / want50 - 1) < 0.055 and abs(p99 / want99 - 1) < 0.055, (p50, want50, p99, want99)
    assert all(h.counts.sum() == min(h.n, HISTORY) for h in histories)  # what leaves the ring leaves the bins


def test_one_slow_window_in_a_hundred_is_the_p99():
    h = LatencyHistory()
    for i in range(HISTORY * 2):
        h.add(2000.0 if i % 100 == 0 else 20.0)
    ((p50, p99),) = percentiles([h])
    assert p50 == pytest.approx(20.0, rel=0.03) and p99 == pytest.approx(20.0, rel=0.03)  # 1 % is not above p99
    for _ in range(15):
        h.add(2000.0)
    ((p50, p99),) = percentiles([h])
    assert p50 == pytest.approx(20.0, rel=0.03) and p99 == pytest.approx(2000.0, rel=0.03)
