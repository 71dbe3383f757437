"""``bench bridge`` end to end on a short run: every event arrives through both bridges and is timed."""

from __future__ import annotations

import argparse
import shutil

import pytest

from instrumentd.clients.bench import bridge as bench_bridge


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto not installed (make system-deps)")
def test_short_run_times_every_event(monkeypatch):
    monkeypatch.setattr(bench_bridge, "QUICK_SECONDS", 0.5)
    result = bench_bridge.bridge(None, True, argparse.Namespace())
    assert [r["bridge"] for r in result.rows] == ["mqtt", "osc"]
    for row in result.rows:
        assert row["events"] == 500 and row["received"] == 500 and row["lost"] == 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert result.summary["mqtt_p99_ms"] == result.rows[0]["p99_ms"] and result.summary["rate_per_s"] == 1000
