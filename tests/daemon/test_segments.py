import numpy as np

from instrumentd.daemon.segments import Change, Segmenter

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
