"""The flags the commands share (``--connect``, ``--server-key``, ``--client-key``, ``CKPT``, ``--seed``,
``--processes``, ``--pitch-engine``, ``--device``), parsed by a real parser; the endpoints they name, and a bad
one is a one-line error of the command that took it."""

from __future__ import annotations

import argparse

import pytest

from instrumentd.clients.cli import main
from instrumentd.clients.commands.options import (
    add_checkpoint_argument, add_connect_argument, add_device_argument, add_pitch_engine_argument,
    add_processes_argument, add_seed_argument, connect_endpoints,
)
from instrumentd.clients.subscribe import DEFAULT_CONNECT
from instrumentd.pipeline.errors import EXIT_USAGE, InstrumentdError

from ...conftest import one_line_error


def _parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="instrumentd client")
    add_connect_argument(parser)
    return parser.parse_args(argv)


def _shared(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="instrumentd command")
    for add in (add_checkpoint_argument, add_seed_argument, add_processes_argument, add_pitch_engine_argument,
                add_device_argument):
        add(parser)
    return parser.parse_args(argv)


def test_shared_flags_default_to_what_their_help_says():
    args = _shared("model.safetensors")
    assert vars(args) == {"checkpoint": "model.safetensors", "seed": 0, "processes": None, "pitch_engine": None,
                          "device": "auto"}


def test_shared_flags_take_typed_values():
    args = _shared("m.safetensors", "--seed", "7", "--processes", "3", "--pitch-engine", "librosa", "--device", "cpu")
    assert (args.seed, args.processes, args.pitch_engine, args.device) == (7, 3, "librosa", "cpu")


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
