"""``instrumentd web``: a live web page of the daemons' streams (see :mod:`instrumentd.clients.web`)."""

from __future__ import annotations

import argparse

from instrumentd.clients.subscribe import DEFAULT_REPLAY
from instrumentd.clients.web import DEFAULT_LISTEN, HISTORY_S

from .options import add_connect_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "web",
        help="a live web page of the daemons' streams (heat map, segment timeline, levels)",
        description=(
            "Subscribe to one or more running `instrumentd serve` daemons and serve a live page: per "
            "stream the current instrument and confidence, the probabilities of the last minutes as a "
            "heat map, the segments on a timeline, the source state and level. The page is filled from "
            "the daemons' replay endpoints when it opens and updated with server-sent events. Nothing is "
            "loaded from the internet. Example: instrumentd web --connect tcp://127.0.0.1:5555, then "
            f"open http://{DEFAULT_LISTEN}/"
        ),
    )
    add_connect_argument(p)
    p.add_argument("--replay", action="append", metavar="ENDPOINT",
                   help=f"replay endpoint to fill the last minutes from, repeatable (default {DEFAULT_REPLAY}; "
                        "'' = none)")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"where the page is served (default {DEFAULT_LISTEN}; another machine's address needs "
                        "--insecure)")
    p.add_argument("--history", type=float, default=HISTORY_S, metavar="SECONDS",
                   help=f"seconds of probabilities and segments on the page (default {HISTORY_S:g})")
    p.add_argument("--insecure", action="store_true",
                   help="serve the page, in clear text and without a login, to other machines")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from instrumentd.clients.subscribe import check_endpoint
    from instrumentd.clients.web import serve_page
    from instrumentd.daemon.security import require_local_listen
    from instrumentd.pipeline.errors import ParameterError

    from .options import connect_endpoints

    host, port = require_local_listen(args.listen, "--listen", args.insecure)
    if not args.history > 0:
        raise ParameterError(f"--history must be positive seconds, got {args.history}")
    endpoints = connect_endpoints(args)
    replay = [check_endpoint(e, "--replay") for e in (args.replay or [DEFAULT_REPLAY]) if e]
    serve_page(host, port, endpoints, replay, args.history)
    return 0
