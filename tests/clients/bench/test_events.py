"""``bench events``: a step's window events built one at a time and together, and encoded."""

from __future__ import annotations

import torch

from instrumentd.clients.bench import events as bench_events
from instrumentd.clients.bench import kind_parser
from instrumentd.clients.cli import main


def test_events_bench_gives_a_row_per_step_size():
    args = kind_parser("events").parse_args(["--windows", "2,30"])
    result = bench_events.events_bench(torch.device("cpu"), True, args)
    assert [r["windows_a_step"] for r in result.rows] == [2, 30]
    assert all(min(r[k] for k in ("build_alone_us", "build_together_us", "encode_us", "encode_checked_us")) > 0
               for r in result.rows)


def test_the_bench_builds_the_same_events_both_ways():
    step = bench_events._step(30, seed=1)
    assert bench_events._alone(step) == bench_events._together(step)


def test_events_bench_refuses_a_bad_count_in_one_line(capsys):
    assert main(["bench", "events", "--windows", "x"]) == 2
    err = capsys.readouterr().err
    assert "--windows 'x': give a comma list of positive counts" in err and err.count("\n") == 1
