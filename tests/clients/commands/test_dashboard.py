"""``instrumentd dashboard``'s command line: one --replay per daemon at most, and a terminal to draw on."""

from __future__ import annotations

import subprocess
import sys

import pytest

from instrumentd.clients.cli import main

from ...conftest import one_line_error


def test_needs_a_terminal():
    out = subprocess.run([sys.executable, "-m", "instrumentd", "dashboard"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "tail" in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, fragments", [
    (["--connect", "tcp://127.0.0.1:1", "--replay", "tcp://127.0.0.1:2", "--replay", "tcp://127.0.0.1:3"],
     ["2 --replay endpoints for 1 --connect endpoint(s)", "one per daemon"]),
    (["--replay", "tcp://127.0.0.1:2", "--replay", "tcp://127.0.0.1:3"],  # the default --connect is one daemon
     ["2 --replay endpoints for 1 --connect endpoint(s)"]),
    (["--connect", "tcp://127.0.0.1:1", "--replay", "127.0.0.1:2"], ["--replay '127.0.0.1:2' is not tcp://"]),
])
def test_replay_endpoints_are_checked_against_the_daemons(args, fragments, capsys):
    assert main(["dashboard", *args]) == 2
    one_line_error(capsys.readouterr().err, "dashboard", *fragments)
