import numpy as np
import pytest

from instrumentd.daemon.segments import Change, Segment, Segmenter, SegmenterTable, segment, window_cells
from instrumentd.model.classes import CLASSES as IRMAS
from instrumentd.pipeline.errors import ParameterError

CLASSES = ("a", "b", "c")


def probs(a, b):
    return np.array([a, b, 1 - a - b])


def test_hysteresis_and_smoothing_make_segments():
    seg = Segmenter(CLASSES, smooth=2, on=0.5, off=0.3)
    out = []
    seq = [probs(0.9, 0.0), probs(0.9, 0.0), probs(0.4, 0.5), probs(0.4, 0.5), probs(0.1, 0.9), probs(0.1, 0.9)]
    for i, p in enumerate(seq):
        out.append(seg.update(p, float(i), i + 3.0))
    # smoothed a: .9 .9 .65 .4 .25 .1 -> on at window 0, stays on at .4 (above off), off at .25
    assert out[0] == [Change("a", "start", 0.0, None, None)]
    assert out[1] == [] and out[2] == []
    assert out[3] == [Change("b", "start", 3.0, None, None)]  # b smoothed: 0 .25 .5
    assert out[4] == [Change("a", "end", 0.0, 6.0, "change")]
    assert seg.labels == ["b"]
    assert seg.close("end of stream") == [Change("b", "end", 3.0, 8.0, "end of stream")]
    assert seg.labels == []


def test_a_value_hovering_between_thresholds_does_not_flicker():
    seg = Segmenter(CLASSES, smooth=1, on=0.5, off=0.3)
    changes = [c for i, p in enumerate([0.55, 0.45, 0.52, 0.35, 0.5]) for c in seg.update(probs(p, 0.8 - p), i, i + 3)]
    assert changes == [Change("a", "start", 0, None, None)]


# ---- a whole file's windows: segment() ------------------------------------------------------------

def test_cells_split_halfway_between_window_centres():
    start, end = window_cells(np.array([0.0, 1.0, 2.0, 2.5]), 3.0, 5.5)
    np.testing.assert_allclose(start, [0.0, 2.0, 3.0, 3.75])
    np.testing.assert_allclose(end, [2.0, 3.0, 3.75, 5.5])


def _switch(n_first: int, n_second: int, a: int, b: int) -> np.ndarray:
    p = np.full((n_first + n_second, len(IRMAS)), 0.01)
    p[:n_first, a] = p[n_first:, b] = 0.9
    return p


def test_segments_of_a_switch_exact_times():
    pia, vio = IRMAS.index("pia"), IRMAS.index("vio")
    p = _switch(5, 5, pia, vio)
    starts = np.arange(10.0)  # 1 s hop, 3 s windows, 12 s file: centres 1.5 .. 10.5, cells split at 2, 3, ... 11
    segs = segment(p, starts, 3.0, 12.0, IRMAS, smooth=1)
    assert segs == [Segment("pia", 0.0, 6.0, pytest.approx(0.9), 5), Segment("vio", 6.0, 12.0, pytest.approx(0.9), 5)]
    # a moving average over the last 3 windows: at window 5 pia is (0.9 + 0.9 + 0.01) / 3 >= off and vio
    # (0.01 + 0.01 + 0.9) / 3 < on; at window 6 pia falls below off and vio reaches on
    segs = segment(p, starts, 3.0, 12.0, IRMAS, smooth=3, on=0.5, off=0.35)
    assert [(s.instrument, s.start, s.end, s.windows) for s in segs] == [("pia", 0.0, 7.0, 6), ("vio", 7.0, 12.0, 4)]
    assert segs[0].mean_probability == pytest.approx((5 * 0.9 + 0.01) / 6)
    assert segs[1].mean_probability == pytest.approx(0.9)


def test_hysteresis_keeps_a_dip_and_cuts_a_drop():
    sax = IRMAS.index("sax")
    p = np.zeros((6, len(IRMAS)))
    p[:, sax] = [0.2, 0.5, 0.4, 0.3, 0.45, 0.55]  # on at 0.5, stays at 0.4, ends at 0.3, stays off at 0.45
    segs = segment(p, np.arange(6) * 1.5, 3.0, 10.5, IRMAS, smooth=1, on=0.5, off=0.35)
    assert segs == [Segment("sax", 2.25, 5.25, pytest.approx(0.45), 2),
                    Segment("sax", 8.25, 10.5, pytest.approx(0.55), 1)]


def test_nothing_predominant_and_bad_settings():
    assert segment(np.full((4, 11), 1 / 11), np.arange(4.0), 3.0, 6.0, IRMAS) == []
    with pytest.raises(ParameterError, match="got 0"):
        segment(np.ones((3, 11)), np.arange(3.0), 3.0, 5.0, IRMAS, smooth=0)
    with pytest.raises(ParameterError, match="--off 0.6"):
        segment(np.ones((3, 11)), np.arange(3.0), 3.0, 5.0, IRMAS, on=0.5, off=0.6)


# ---- every stream's state in one table: SegmenterTable --------------------------------------------

def _runs(rng, n_windows: int) -> np.ndarray:
    """``[n_windows, len(IRMAS)]`` probabilities that dwell on one class for a few windows, then move."""
    out = rng.dirichlet(np.full(len(IRMAS), 0.5), n_windows)
    winner = np.repeat(rng.integers(0, len(IRMAS), n_windows // 4 + 1), 4)[:n_windows]
    out[np.arange(n_windows), winner] += rng.uniform(0.5, 2.0, n_windows)
    return out / out.sum(axis=1, keepdims=True)


class _Rule:
    """The module's rule written out plainly for one stream: the mean of the last ``smooth`` windows since
    the last reset, on at ``on``, off under ``off``."""

    def __init__(self, smooth=3, on=0.5, off=0.35):
        self.smooth, self.on, self.off = smooth, on, off
        self.recent, self.open, self.last_end = [], {}, 0.0

    @property
    def labels(self):
        return [c for c in IRMAS if c in self.open]

    def update(self, p, t_start, t_end):
        self.recent = (self.recent + [np.asarray(p, np.float64)])[-self.smooth:]
        mean = np.mean(self.recent, axis=0)
        changes = []
        for c, m in zip(IRMAS, mean):
            if c in self.open and m < self.off:
                changes.append(Change(c, "end", self.open.pop(c), self.last_end, "change"))
            elif c not in self.open and m >= self.on:
                self.open[c] = t_start
                changes.append(Change(c, "start", t_start, None, None))
        self.last_end = t_end
        return changes

    def close(self, reason):
        changes = [Change(c, "end", self.open[c], self.last_end, reason) for c in self.labels]
        self.open.clear()
        return changes

    def reset(self):
        self.recent = []


def test_a_table_steps_a_batch_of_windows_as_each_stream_alone_would():
    """Batches that mix streams, hold a stream twice, reset and close some: the same labels and changes
    as the rule applied to each stream alone, its windows in order."""
    rng = np.random.default_rng(3)
    n_streams, n_windows = 37, 40
    table = SegmenterTable(IRMAS, smooth=3, on=0.5, off=0.35)
    rows = [table.add() for _ in range(n_streams)]  # grows 1, 2, 4, ... 64
    alone = [_Rule(smooth=3, on=0.5, off=0.35) for _ in range(n_streams)]
    probs = [_runs(rng, n_windows) for _ in range(n_streams)]
    fed = [0] * n_streams
    flips = 0
    while min(fed) < n_windows:
        batch, ks = [], []
        for s in rng.choice(n_streams, 12):  # a stream may come twice
            if fed[s] < n_windows:
                batch.append(s)
                ks.append(fed[s])
                fed[s] += 1
        if not batch:
            continue
        t_start = [float(k) for k in ks]
        labels, changes = table.update([rows[s].row for s in batch], np.stack([probs[s][k] for s, k in zip(batch, ks)]),
                                       t_start, [t + 3.0 for t in t_start])
        for s, k, got_labels, got_changes in zip(batch, ks, labels, changes):
            assert got_changes == alone[s].update(probs[s][k], float(k), k + 3.0)
            assert got_labels == alone[s].labels
            flips += len(got_changes)
        assert [r.labels for r in rows] == [a.labels for a in alone]
        s = int(rng.integers(n_streams))
        if rng.random() < 0.1:
            rows[s].reset(), alone[s].reset()
        elif rng.random() < 0.05:
            assert rows[s].close("source failed") == alone[s].close("source failed")
    assert flips > 100  # the streams did change instrument, many times
    assert [r.close("shutdown") for r in rows] == [a.close("shutdown") for a in alone]
