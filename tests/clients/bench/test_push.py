"""``bench push``: one step's push of new audio through the real features, timed, with the profiler's breakdown."""

from __future__ import annotations

import pytest
import torch

from instrumentd.clients.bench import kind_parser
from instrumentd.clients.bench import push as bench_push
from instrumentd.clients.cli import main


def test_push_times_each_size_and_profiles_the_first():
    args = kind_parser("push").parse_args(["--streams", "6", "--per-push", "2,6", "--pushes", "2", "--profile"])
    result = bench_push.push(torch.device("cpu"), True, args)
    assert [(r["streams"], r["per_push"]) for r in result.rows] == [(6, 2), (6, 6)]
    for r in result.rows:
        assert r["ms_per_push"] >= r["mel_ms"] + r["pitch_ms"] > 0 and r["mel_ms"] > 0
        assert r["pitch_graphs"] is False and r["feature_graphs"] is False  # CUDA graphs on a GPU only
        assert r["windows_ms"] >= r["windows_host_ms"] > 0
    assert result.summary["profile_per_push"] == 2
    ops = {p["op"]: p for p in result.summary["profile"]}
    assert 0 < len(ops) <= bench_push.PROFILE_TOP and all(p["host_ms"] > 0 for p in ops.values())
    assert any(op.startswith("aten::") for op in ops)  # torch's own operations, as the profiler names them


@pytest.mark.gpu
def test_push_on_a_gpu_replays_the_steps_as_graphs_unless_told():
    for flags, pitch, features in (([], True, True), (["--pitch-ops"], False, True),
                                   (["--feature-ops"], True, False)):
        args = kind_parser("push").parse_args(["--streams", "40", "--per-push", "5,40", "--pushes", "3", *flags])
        result = bench_push.push(torch.device("cuda"), True, args)
        assert [(r["pitch_graphs"], r["feature_graphs"]) for r in result.rows] == [(pitch, features)] * 2
        assert all(r["ms_per_push"] >= r["mel_ms"] + r["pitch_ms"] > 0 for r in result.rows)
        assert all(r["windows_ms"] >= r["windows_host_ms"] > 0 for r in result.rows)


@pytest.mark.parametrize("flags, said", [
    (["--streams", "4", "--per-push", "2,8"], "--per-push 8 needs at least as many --streams (got 4)"),
    (["--streams", "0"], "--streams must be at least 1, got 0"),
    (["--pushes", "0"], "--pushes must be at least 1, got 0"),
])
def test_push_refuses_bad_flags_in_one_line(capsys, flags, said):
    assert main(["bench", "push", *flags]) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1
