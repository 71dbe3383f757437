"""The flags the client commands share (``--connect``, ``--server-key``, ``--client-key``), parsed by a real
parser and turned into endpoints; a bad one is a one-line error of the command that took it."""

from __future__ import annotations

import argparse

import pytest

from instrumentd.clients.cli import main
from instrumentd.clients.commands.options import add_connect_argument, connect_endpoints
from instrumentd.clients.subscribe import DEFAULT_CONNECT
from instrumentd.pipeline.errors import EXIT_USAGE, InstrumentdError

from ...conftest import one_line_error


def _parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="instrumentd client")
    add_connect_argument(parser)
    return parser.parse_args(argv)


def test_connect_is_repeatable_in_order():
    args = _parsed("--connect", "tcp://10.0.0.2:5555", "--connect", "ipc:///run/instrumentd/pub")
    assert connect_endpoints(args) == ["tcp://10.0.0.2:5555", "ipc:///run/instrumentd/pub"]


def test_no_connect_is_the_daemons_default_endpoint():
    assert connect_endpoints(_parsed()) == [DEFAULT_CONNECT]


@pytest.mark.parametrize("argv, message", [
    (["--connect", "tcp://127.0.0.1:5555", "--connect", "localhost:5555"], "--connect 'localhost:5555' is not tcp://"),
    (["--client-key", "me.key_secret"], "--client-key needs --server-key"),
    (["--server-key", "missing/server.key"], "--server-key missing/server.key: no such certificate file"),
])
def test_a_bad_value_is_a_usage_error_naming_it(argv, message):
    with pytest.raises(InstrumentdError) as err:
        connect_endpoints(_parsed(*argv))
    assert message in str(err.value) and err.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("command", [["tail"], ["record", "--db", "events.sqlite"], ["web"], ["dashboard"]])
def test_every_client_command_reports_a_bad_shared_flag_in_one_line(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--server-key", "missing/server.key"]) == 2
    one_line_error(capsys.readouterr().err, command[0], "--server-key missing/server.key: no such certificate file")
    assert list(tmp_path.iterdir()) == []  # stopped before it made anything
