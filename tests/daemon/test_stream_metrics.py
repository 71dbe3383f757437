"""The per-stream series rendered in one pass: what prometheus-client would say for the same events."""

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from instrumentd.daemon.stream_metrics import LATENCY_BUCKETS, StreamCounters, render


def samples(text: str, prefix: str) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of the samples whose name starts with ``prefix``, but for
    the ``_created`` timestamps (which the one-pass rendering leaves out)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith(prefix) and not s.name.endswith("_created")}


def test_latency_and_segments_match_prometheus_client():
    """Latencies on and around every bucket bound, past the last one and at zero, and segment events
    of several streams: the same buckets, counts, sums and counters as prometheus-client's."""
    rng = random.Random(7)
    registry = CollectorRegistry()
    latency = Histogram("instrumentd_latency_seconds", "-", ["stream"], buckets=LATENCY_BUCKETS, registry=registry)
    segments = Counter("instrumentd_segments", "-", ["stream", "state"], registry=registry)
    counters = StreamCounters()
    values = [0.0, 7.5, 60.0, *LATENCY_BUCKETS, *(b * 1.0001 for b in LATENCY_BUCKETS),
              *(rng.uniform(0, 6) for _ in range(200))]
    for i, seconds in enumerate(values):
        stream = f"s{i % 3}"
        latency.labels(stream).observe(seconds)
        counters.observe({"type": "window", "stream": stream, "latency_ms": seconds * 1000})
        if i % 7 == 0:
            state = "start" if i % 2 else "end"
            segments.labels(stream, state).inc()
            counters.observe({"type": "segment", "stream": stream, "state": state})
    counters.observe({"type": "source", "stream": "s0", "state": "running"})  # not counted here
    ours = render([], counters).decode()
    theirs = generate_latest(registry).decode()
    for prefix in ("instrumentd_latency_seconds_", "instrumentd_segments_total"):
        got, want = samples(ours, prefix), samples(theirs, prefix)
        assert got.keys() == want.keys(), prefix
        assert all(abs(got[k] - want[k]) < 1e-9 for k in want), prefix
    assert samples(ours, "instrumentd_latency_seconds_count")[("instrumentd_latency_seconds_count",
                                                                (("stream", "s0"),))] == len(values[::3])
