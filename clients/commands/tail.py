"""``instrumentd tail``: print the daemons' events as they come, one line each (see :mod:`instrumentd.clients.tail`)."""

from __future__ import annotations

import argparse
import signal

from instrumentd.clients.tail import FORMATS

from .options import add_connect_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tail",
        help="print the daemon's events as JSON lines or text",
        description=(
            "Subscribe to one or more running `instrumentd serve` daemons and print each event as one "
            "JSON line (docs/events.md) or, with --format text, one line for people "
            "(12:03:04 radio Violin 0.97). Filters keep the events of some streams, some instruments or "
            "confident windows only. With --replay, a gap in a stream's seq (a subscriber that was cut "
            "off, a daemon restart) is filled from the daemon's event log before the next event is printed."
        ),
    )
    add_connect_argument(p)
    p.add_argument("--stream", action="append", metavar="NAME", help="only this stream (repeatable)")
    p.add_argument("--instrument", action="append", metavar="CLASS",
                   help="only windows whose top class or labels include CLASS (code like pia or name like piano; "
                        "repeatable), and segments of it")
    p.add_argument("--min-prob", type=float, metavar="P",
                   help="only windows in which an instrument (one of --instrument, if given) has probability >= P")
    p.add_argument("--topics", default="window,segment,source", metavar="LIST",
                   help="comma-separated event kinds among window, segment, source, status "
                        "(default: window,segment,source)")
    p.add_argument("--status", action="store_true",
                   help="also print status heartbeats (same as adding status to --topics)")
    p.add_argument("--replay", action="append", metavar="ENDPOINT",
                   help="fill seq gaps from this replay endpoint (e.g. tcp://127.0.0.1:5556), repeatable")
    p.add_argument("--format", choices=sorted(FORMATS), default="json",
                   help="json: each event as one JSON line (default); text: one short line for people")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from instrumentd.clients.subscribe import Replayer, check_endpoint
    from instrumentd.clients.tail import Filter, follow, parse_instruments, parse_topics

    from .options import connect_endpoints

    # SIGINT ends tail (exit 130) however it was started: a script's background job inherits SIGINT
    # ignored, and Python then keeps ignoring it (record, the bridges and serve set their own handlers)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    topics = parse_topics(args.topics, args.status)
    keep = Filter(set(args.stream or ()), parse_instruments(args.instrument), args.min_prob, topics)
    endpoints = connect_endpoints(args)
    replayer = Replayer([check_endpoint(e, "--replay") for e in args.replay]) if args.replay else None
    follow(endpoints, topics, args.stream, keep, FORMATS[args.format], replayer)
    return 0
