"""Flags that several subcommands share, and their turning into typed values."""

from __future__ import annotations

import argparse

from instrumentd.clients.subscribe import DEFAULT_CONNECT


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: where a command computes, ``auto`` (a GPU when there is one), ``cpu`` or ``cuda[:N]``."""
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")


def add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    """``CKPT``: the trained checkpoint a command reads."""
    parser.add_argument("checkpoint", metavar="CKPT", help="trained checkpoint (.safetensors)")


def add_pitch_engine_argument(parser: argparse.ArgumentParser) -> None:
    """``--pitch-engine``: the registered pitch engine that tracks f0 in audio; None is the pipeline's default."""
    parser.add_argument("--pitch-engine", default=None, help="pitch engine for audio input (default: the pipeline's)")


def add_seed_argument(parser: argparse.ArgumentParser) -> None:
    """``--seed``: the random seed of a generated set; the same seed writes the same files."""
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def add_processes_argument(parser: argparse.ArgumentParser) -> None:
    """``--processes``: renders run in parallel; None is ``training.synth.default_processes()``."""
    parser.add_argument("--processes", type=int, default=None, help="parallel renders (default: CPU count, at most 4)")


def add_connect_argument(parser: argparse.ArgumentParser) -> None:
    """``--connect`` (repeatable), ``--server-key`` and ``--client-key``: how a client reaches its daemons."""
    parser.add_argument("--connect", action="append", metavar="ENDPOINT",
                        help=f"a daemon's PUB endpoint, repeatable for several daemons (default {DEFAULT_CONNECT})")
    parser.add_argument("--server-key", metavar="FILE",
                        help="the daemon's CurveZMQ public certificate (server.key from `instrumentd keys`)")
    parser.add_argument("--client-key", metavar="FILE",
                        help="this client's CurveZMQ secret certificate (client.key_secret from `instrumentd keys`)")


def connect_endpoints(args: argparse.Namespace) -> list[str]:
    """``--connect`` values, or the daemon's default endpoint; a malformed one is a ParameterError.

    With ``--server-key`` every socket this process makes from here on (subscriptions and replay
    requests) is a CurveZMQ client of that daemon.
    """
    from instrumentd.clients.subscribe import check_endpoint
    from instrumentd.daemon.security import client_context

    endpoints = [check_endpoint(e, "--connect") for e in (args.connect or [DEFAULT_CONNECT])]
    client_context(args.server_key, args.client_key)
    return endpoints
