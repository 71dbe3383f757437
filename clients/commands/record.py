"""``instrumentd record``: the daemons' events in an SQLite file (:mod:`~instrumentd.clients.record`)."""

from __future__ import annotations

import argparse
import sys

from instrumentd.clients.subscribe import DEFAULT_REPLAY

from .options import add_connect_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "record",
        help="store every event in an SQLite file, filling seq gaps from the daemon's replay endpoint",
        description=(
            "Subscribe to one or more daemons and store every window, segment and status event in an "
            "SQLite file (tables events, status, gaps). A gap in a stream's seq (this recorder was cut "
            "off, stopped, or the publisher dropped a message) is filled from the daemon's replay "
            "endpoint. Stops cleanly on Ctrl-C or SIGTERM."
        ),
    )
    p.add_argument("--db", required=True, metavar="FILE", help="SQLite file (created if missing)")
    add_connect_argument(p)
    p.add_argument("--replay", action="append", metavar="ENDPOINT",
                   help=f"a daemon's replay endpoint, repeatable (default {DEFAULT_REPLAY} when no --connect is given)")
    p.add_argument("--stream", action="append", metavar="NAME", help="only this stream (repeatable)")
    p.add_argument("--backfill", action="store_true",
                   help="for a stream new to the file, fetch its logged history from seq 0 first")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from instrumentd.clients.record import record
    from instrumentd.clients.subscribe import check_endpoint

    from .options import connect_endpoints

    endpoints = connect_endpoints(args)
    replay = args.replay if args.replay is not None else ([] if args.connect else [DEFAULT_REPLAY])
    replay = [check_endpoint(e, "--replay") for e in replay]
    added, missing = record(args.db, endpoints, replay, args.stream, args.backfill)
    print(f"instrumentd record: {added['live']} events live, {added['replay']} replayed into {args.db}; "
          f"{missing} missing", file=sys.stderr)
    return 0
