"""``bench stream``: paced synthetic streams through the real daemon; the figures add up (speed is not asserted)."""

import os

import pytest
import torch

from instrumentd.clients.bench.stream import inference_mode, parse_devices, run_streams
from instrumentd.pipeline.errors import ParameterError


@pytest.mark.slow
def test_aligned_live_streams_share_one_forward_pass():
    """Three real-time streams spread over the hop: aligned, one forward pass serves all three."""
    r = run_streams([torch.device("cpu")], 3, 2.0, gather=0.05)
    assert r["dropped_windows"] == 0 and r["windows"] == 6
    assert r["windows_per_pass"] >= 2.5, r
    assert 0 < r["cpu_cores"] <= os.cpu_count(), r  # the daemon and its pacing thread worked, on real cores
    # one pass a tick: a stage's time per pass is its busy share of the run over the passes
    passes = r["windows"] / r["windows_per_pass"]
    assert r["model_ms_per_pass"] == pytest.approx(1000 * r["model_busy"] * 2.0 / passes, rel=0.05, abs=0.5)
    assert all(r[f"{k}_ms_per_pass"] >= 0 for k in ("read", "mel", "pitch", "windows", "model", "decide", "publish"))
    assert r["gpu_util_percent"] is None  # no GPU in the run


@pytest.mark.slow
def test_bench_splits_streams_over_daemon_processes():
    """Two processes, each a daemon with its own pool and rings, started together; the figures add up."""
    r = run_streams([torch.device("cpu")], 3, 2.0, processes=2)
    assert r["processes"] == 2 and r["expected_windows"] == 6
    assert r["dropped_windows"] == 0 and r["windows"] == 6, r
    assert 0 < r["cpu_cores"] <= os.cpu_count(), r  # the two processes' CPU seconds per second, summed
    with pytest.raises(ParameterError, match="between 2 and the stream count 3, got 4"):
        run_streams([torch.device("cpu")], 3, 2.0, processes=4)


def test_benchinference_mode_is_checked_and_kept_on_cpu():
    with pytest.raises(ParameterError, match="'fastest'"):
        inference_mode(torch.device("cpu"), "fastest")
    assert inference_mode(torch.device("cpu"), "auto") == "auto"  # no GPU calibration on a CPU
    assert inference_mode(torch.device("cpu"), "graphs-fp32") == "graphs-fp32"


def test_devices_flag_takes_a_list_or_all():
    assert parse_devices("cpu,cpu") == [torch.device("cpu")] * 2
    with pytest.raises(ParameterError, match="'gpu'"):
        parse_devices("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="no CUDA device is visible"):
            parse_devices("all")


@pytest.mark.slow
def test_chosen_stream_counts_on_one_tick_are_one_row_each(capsys):
    """``--streams 1,3 --gather 0.05 --seconds 1``: a row per count, aligned, measured as asked; the summary
    names the most streams within target."""
    import json

    from instrumentd.clients.cli import main

    assert main(["bench", "stream", "--device", "cpu", "--streams", "1,3", "--gather", "0.05", "--seconds", "1",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = summary["rows"]
    assert [r["streams"] for r in rows] == [1, 3] and {r["mode"] for r in rows} == {"aligned"}
    assert [r["expected_windows"] for r in rows] == [1, 3] and summary["seconds"] == 1.0
    assert all(r["rss_mb"] > 50 and r["cuda_mb"] is None for r in rows)  # the daemon's memory, read from /proc
    assert summary["max_streams_within_target"] == max([r["streams"] for r in rows if r["ok"]], default=0)


@pytest.mark.parametrize("flags, message", [
    (["--streams", "4,x"], "--streams '4,x': give a comma list of positive counts"),
    (["--gather", "0.05"], "--gather needs --streams"),
    (["--streams", "2", "--processes", "3"], "--processes 3 is more than the streams of a run"),
    (["--streams", "2", "--seconds", "-1"], "--seconds must be positive"),
])
def test_bad_stream_counts_are_one_line_errors(flags, message, capsys):
    from instrumentd.clients.cli import main

    from ...conftest import one_line_error

    assert main(["bench", "stream", "--device", "cpu", *flags]) == 2
    one_line_error(capsys.readouterr().err, "bench", message)
