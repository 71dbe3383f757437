"""``instrumentd dashboard``: a live terminal screen of the daemons' streams (:mod:`~instrumentd.clients.dashboard`)."""

from __future__ import annotations

import argparse

from instrumentd.clients.subscribe import DEFAULT_REPLAY

from .options import add_connect_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dashboard",
        help="live terminal screen of the daemon's streams",
        description=(
            "A live screen of one or more running daemons: per stream the predominant instrument(s), "
            "the 11 probabilities as bars, a timeline of recent windows coloured by instrument, the "
            "segment log, latency and drops, and each daemon's status. Waits for a daemon that does "
            "not answer yet and reconnects by itself; fills the timeline from the daemon's replay "
            "endpoint when it first answers. q or Ctrl-C quits."
        ),
    )
    add_connect_argument(p)
    p.add_argument("--replay", action="append", metavar="ENDPOINT",
                   help="the replay endpoint of each --connect daemon, in the same order, to start with its recent "
                        f"events (default {DEFAULT_REPLAY} with the default --connect, none otherwise)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from instrumentd.clients.dashboard import show
    from instrumentd.clients.subscribe import check_endpoint
    from instrumentd.pipeline.errors import InstrumentdError

    from .options import connect_endpoints

    endpoints = connect_endpoints(args)
    replays = args.replay if args.replay is not None else ([] if args.connect else [DEFAULT_REPLAY])
    if len(replays) > len(endpoints):
        raise InstrumentdError(f"{len(replays)} --replay endpoints for {len(endpoints)} --connect endpoint(s): "
                               "give one per daemon, in the same order")
    replays = [check_endpoint(r, "--replay") for r in replays]
    if not sys.stdout.isatty():
        raise InstrumentdError("the dashboard needs a terminal; use `instrumentd tail` to print events instead")
    show(endpoints, replays)
    return 0
