"""``instrumentd proxy``: several daemons' events and replay on one endpoint (:mod:`~instrumentd.daemon.proxy`)."""

from __future__ import annotations

import argparse
import logging

from instrumentd.daemon.replay import REPLAY_TIMEOUT_S

log = logging.getLogger("instrumentd.proxy")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "proxy",
        help="join several daemons' events (and replay) into one endpoint",
        description=(
            "Subscribe to several `instrumentd serve` daemons and publish all their events on one "
            "endpoint (ZeroMQ's XSUB/XPUB proxy); subscribers (dashboard, tail, record) connect to "
            "--frontend as to one daemon. With --replay-frontend, replay requests are answered by the "
            "daemon that owns the stream. Stream names must be unique across the daemons."
        ),
        epilog=("Example: instrumentd proxy --backend tcp://10.0.0.1:5555 --backend tcp://10.0.0.2:5555 "
                "--frontend tcp://127.0.0.1:5555 --replay-backend tcp://10.0.0.1:5556 "
                "--replay-backend tcp://10.0.0.2:5556 --replay-frontend tcp://127.0.0.1:5556"),
    )
    p.add_argument("--backend", action="append", required=True, metavar="ENDPOINT",
                   help="a daemon's PUB endpoint to subscribe to (repeatable)")
    p.add_argument("--frontend", required=True, metavar="ENDPOINT", help="where subscribers connect (bound here)")
    p.add_argument("--replay-backend", action="append", metavar="ENDPOINT",
                   help="a daemon's replay endpoint (repeatable; needs --replay-frontend)")
    p.add_argument("--replay-frontend", metavar="ENDPOINT", help="where replay clients connect (bound here)")
    p.add_argument("--replay-timeout", type=float, default=REPLAY_TIMEOUT_S, metavar="SECONDS",
                   help=f"how long a replay backend may take to answer (default {REPLAY_TIMEOUT_S:g})")
    p.add_argument("--server-key", metavar="FILE",
                   help="the daemons' CurveZMQ public certificate, when they have a --curve-key")
    p.add_argument("--client-key", metavar="FILE", help="this proxy's CurveZMQ secret certificate towards the daemons")
    p.add_argument("--curve-key", metavar="FILE",
                   help="the proxy's own CurveZMQ secret certificate: its frontends encrypted, as a daemon's")
    p.add_argument("--curve-clients", metavar="DIR", help="only subscribers whose public certificate is in DIR get in")
    p.add_argument("--insecure", action="store_true",
                   help="allow a frontend other machines can reach, in clear text, without --curve-key")
    p.set_defaults(run=run)


def _check(args: argparse.Namespace) -> None:
    """Every endpoint well formed, replay given on both sides or neither; ParameterError names the bad value."""
    from instrumentd.clients.subscribe import check_endpoint
    from instrumentd.daemon.security import require_protection
    from instrumentd.pipeline.errors import ParameterError

    for e in args.backend:
        check_endpoint(e, "--backend")
    check_endpoint(args.frontend, "--frontend")
    for e in args.replay_backend or []:
        check_endpoint(e, "--replay-backend")
    if args.replay_frontend:
        check_endpoint(args.replay_frontend, "--replay-frontend")
    if bool(args.replay_frontend) != bool(args.replay_backend):
        raise ParameterError("--replay-frontend and --replay-backend go together: give both or neither")
    if args.replay_frontend and args.replay_frontend == args.frontend:
        raise ParameterError(f"--frontend and --replay-frontend must differ, both are {args.frontend!r}")
    if not args.replay_timeout > 0:
        raise ParameterError(f"--replay-timeout must be positive seconds, got {args.replay_timeout}")
    for name, endpoint in (("frontend", args.frontend), ("replay-frontend", args.replay_frontend)):
        require_protection(name, endpoint or "", args.curve_key or "", args.insecure)


def run(args: argparse.Namespace) -> int:
    import zmq

    from instrumentd.daemon.proxy import POLL_MS, EventProxy, ReplayRouter
    from instrumentd.daemon.security import Guard, client_context
    from instrumentd.daemon.signals import Signals

    _check(args)
    back_context = client_context(args.server_key, args.client_key, zmq.Context())
    guard = Guard(args.curve_key or "", args.curve_clients or "", zmq.Context())
    events = router = None
    with Signals() as signals:
        try:
            events = EventProxy(args.backend, args.frontend, guard.context, back_context)
            if args.replay_frontend:
                router = ReplayRouter(args.replay_frontend, args.replay_backend, guard.context, back_context,
                                      args.replay_timeout)
            events.start()
            log.info("proxy: events of %d daemon(s) on %s%s", len(args.backend), args.frontend,
                     f"; replay of {len(args.replay_backend)} on {args.replay_frontend}" if router else "")
            poller = zmq.Poller()
            for sock in router.sockets if router else []:
                poller.register(sock, zmq.POLLIN)
            while not signals.should_exit:
                if router is None:
                    signals.stop.wait(POLL_MS / 1000)
                    continue
                poller.poll(POLL_MS)
                router.serve()
        finally:
            if events is not None:
                events.close()
            if router is not None:
                router.close()
            guard.close()
    return 0
