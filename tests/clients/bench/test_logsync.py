"""``bench logsync``: a heartbeat's sync of real event logs on disk, one syncfs against an fsync a file."""

from __future__ import annotations

import torch

from instrumentd.clients.bench import kind_parser
from instrumentd.clients.bench import logsync as bench_logsync
from instrumentd.clients.cli import main
from instrumentd.daemon.fsyncer import HAS_SYNCFS


def test_logsync_times_both_ways_for_each_count(tmp_path):
    args = kind_parser("logsync").parse_args(["--streams", "5,20", "--dir", str(tmp_path)])
    result = bench_logsync.logsync(torch.device("cpu"), True, args)
    ways = ["fsync a file", "one syncfs"] if HAS_SYNCFS else ["fsync a file"]
    assert [(r["streams"], r["sync"]) for r in result.rows] == [(n, w) for n in (5, 20) for w in ways]
    assert all(0 < r["loop_ms"] <= r["done_ms"] for r in result.rows)
    assert list(tmp_path.iterdir()) == []  # the logs are removed


def test_logsync_refuses_a_bad_count_in_one_line(capsys):
    assert main(["bench", "logsync", "--streams", "0"]) == 2
    err = capsys.readouterr().err
    assert "--streams '0': give a comma list of positive counts" in err and err.count("\n") == 1
