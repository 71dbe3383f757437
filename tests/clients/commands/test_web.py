"""``instrumentd web``'s command line: a page other machines can reach only with --insecure, positive
--history, well-formed --replay endpoints; each a one-line error."""

import subprocess
import sys

import pytest

from instrumentd.clients.cli import main

from ...conftest import one_line_error


@pytest.mark.parametrize("listen, fragment", [
    ("0.0.0.0:8080", "is reachable from other machines over plain HTTP"),
    ("8080", "--listen '8080' is not HOST:PORT"),
])
def test_bad_listen_address_is_one_line(listen, fragment):
    out = subprocess.run([sys.executable, "-m", "instrumentd", "web", "--listen", listen], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("instrumentd web: error:") and fragment in out.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--history", "0"], "--history must be positive seconds, got 0.0"),
    (["--history", "-5"], "--history must be positive seconds, got -5.0"),
    (["--replay", "127.0.0.1:5556"], "--replay '127.0.0.1:5556' is not tcp://"),
])
def test_bad_history_or_replay_is_one_line(args, fragment, capsys):
    assert main(["web", "--listen", "127.0.0.1:1", *args]) == 2
    one_line_error(capsys.readouterr().err, "web", fragment)
