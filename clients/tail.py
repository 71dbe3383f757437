"""``instrumentd tail``: print the daemon's events as JSON lines, one per event, as they come."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tail",
        help="print the daemon's events as JSON lines",
        description=(
            "Subscribe to a running `instrumentd serve` and print each event as one JSON line. "
            "With --replay, a gap in a stream's seq (a subscriber that fell behind, a restart) is "
            "filled from the daemon's event log before the next event is printed."
        ),
    )
    p.add_argument("--connect", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                   help="the daemon's PUB endpoint (default tcp://127.0.0.1:5555)")
    p.add_argument("--stream", action="append", metavar="NAME", help="only this stream (repeatable)")
    p.add_argument("--status", action="store_true", help="also print status heartbeats")
    p.add_argument("--replay", metavar="ENDPOINT", help="fill seq gaps from this replay endpoint (e.g. tcp://127.0.0.1:5556)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import zmq

    from instrumentd.daemon.events import EventError, decode
    from instrumentd.daemon.replay import replay

    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.connect(args.connect)
    prefixes = [f"{kind}.{s}" for s in args.stream for kind in ("window", "segment")] if args.stream else \
        ["window.", "segment."]
    for prefix in prefixes + (["status"] if args.status else []):
        sock.setsockopt_string(zmq.SUBSCRIBE, prefix)
    wanted = set(args.stream or ())
    next_seq: dict[str, int] = {}
    try:
        while True:
            topic, body = sock.recv_multipart()
            try:
                event = decode(body)
            except EventError as exc:
                print(f"instrumentd tail: skipping a bad event on {topic!r}: {exc}", file=sys.stderr)
                continue
            stream = event.get("stream")
            if wanted and stream is not None and stream not in wanted:
                continue  # a topic prefix matched a longer stream name
            if stream is not None:
                expected = next_seq.get(stream)
                if args.replay and expected is not None and event["seq"] > expected:
                    for missed in replay(args.replay, stream, expected):
                        if missed["seq"] >= event["seq"]:
                            break
                        print(json.dumps(missed), flush=True)
                if expected is not None and event["seq"] < expected:
                    continue  # already printed from the replay
                next_seq[stream] = event["seq"] + 1
            print(json.dumps(event), flush=True)
    finally:
        sock.close(linger=0)
