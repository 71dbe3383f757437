"""``bench push``: one step's push of new audio through the real features, timed, with the profiler's breakdown."""

from __future__ import annotations

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
    assert result.summary["profile_per_push"] == 2
    ops = {p["op"]: p for p in result.summary["profile"]}
    assert 0 < len(ops) <= bench_push.PROFILE_TOP and all(p["host_ms"] > 0 for p in ops.values())
    assert any(op.startswith("aten::") for op in ops)  # torch's own operations, as the profiler names them


def test_push_refuses_more_streams_a_push_than_it_holds_in_one_line(capsys):
    assert main(["bench", "push", "--streams", "4", "--per-push", "2,8"]) == 2
    err = capsys.readouterr().err
    assert "--per-push 8 needs at least as many --streams (got 4)" in err and err.count("\n") == 1
