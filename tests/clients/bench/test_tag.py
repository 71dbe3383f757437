"""``bench tag``: the whole command, quick, on the CPU; its JSON line carries the figures (speed is not asserted)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_bench_tag_quick():
    out = subprocess.run([sys.executable, "-m", "instrumentd", "bench", "tag", "--quick", "--json", "--device", "cpu"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["bench"] == "tag" and summary["batch_size"] == 16
    assert all(summary[k] > 0 for k in ("short_x_realtime", "long_x_realtime", "one_at_a_time_x_realtime"))


def test_each_bench_lists_its_own_flags():
    """``bench stream --help`` names stream's flags; ``bench tag`` refuses them."""
    out = subprocess.run([sys.executable, "-m", "instrumentd", "bench", "stream", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--processes" in out.stdout and "--devices" in out.stdout
    out = subprocess.run([sys.executable, "-m", "instrumentd", "bench", "tag", "--processes", "2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "unrecognized arguments: --processes 2" in out.stderr
