"""``bench scan``: a worker's step with many live streams, waiting and all ready, on the real worker."""

from __future__ import annotations

import torch

from instrumentd.clients.bench import kind_parser
from instrumentd.clients.bench import scan as bench_scan
from instrumentd.clients.cli import main


def test_scan_times_a_step_of_waiting_and_of_ready_streams():
    args = kind_parser("scan").parse_args(["--streams", "40,8"])
    result = bench_scan.scan(torch.device("cpu"), True, args)
    assert [(r["streams"], r["state"]) for r in result.rows] == [(8, "waiting"), (8, "all ready"),
                                                                 (40, "waiting"), (40, "all ready")]
    assert all(r["ms_per_step"] > 0 for r in result.rows)
    assert result.summary["rows"] == result.rows


def test_scan_refuses_a_bad_count_in_one_line(capsys):
    assert main(["bench", "scan", "--streams", "0,10"]) == 2
    err = capsys.readouterr().err
    assert "--streams '0,10': give a comma list of positive counts" in err and err.count("\n") == 1
