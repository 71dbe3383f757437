"""``instrumentd serve``: the streaming daemon's command line (flags -> Config -> Server)."""

from __future__ import annotations

import argparse
import logging
import sys

from .config import HOP_RANGE, LOG_LEVELS, PITCH_POLICIES, PRESETS, SOURCE_KINDS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the streaming daemon: audio streams in, instrument events out over ZeroMQ",
        description=(
            "Listen to one or more audio streams and publish, every --hop seconds per stream, the "
            "predominant instrument of the last 3 s as JSON events on a ZeroMQ PUB socket (topics "
            "window.<stream>, segment.<stream>, status; docs/events.md). Events are logged first and "
            "can be replayed from --replay. Settings come from the defaults, then --config FILE, then "
            "INSTRUMENTD_<SETTING> environment variables, then these flags. SIGINT, SIGTERM and SIGHUP "
            "(the terminal closed) finish the windows already heard, publish them, close the open segments "
            "and exit 0; a second Ctrl-C exits without finishing. Exit codes: 0 stopped or every source "
            "ended, 1 failed while serving, 2 bad flags, settings, checkpoint or sources, 3 could not start "
            "(log folder locked by another daemon or not writable, endpoint taken, not enough memory)."
        ),
        epilog=(
            "SPEC: mic[:DEVICE] | file:PATH (real time) | file+fast:PATH | stdin:FORMAT:RATE:CHANNELS "
            "(FORMAT s16le s32le f32le f64le u8) | ffmpeg:URL. Example: instrumentd serve --source "
            "studio=mic --source radio=ffmpeg:https://example.org/stream.mp3"
        ),
    )
    p.add_argument("--config", metavar="FILE", help="TOML file with any of the settings --print-config shows")
    p.add_argument("--source", action="append", metavar="[NAME=]SPEC",
                   help=f"a stream to listen to, repeatable; kinds: {', '.join(SOURCE_KINDS)}")
    p.add_argument("--pub", metavar="ENDPOINT", help="ZeroMQ PUB endpoint (default tcp://127.0.0.1:5555)")
    p.add_argument("--replay", metavar="ENDPOINT", help="replay endpoint (default tcp://127.0.0.1:5556; '' = off)")
    p.add_argument("--device", help="auto (every visible GPU, else the CPU), cpu, cuda, cuda:N or a comma list "
                                    "such as cuda:0,cuda:1 (streams spread over them; cpu,cpu exercises that on a CPU)")
    p.add_argument("--hop", type=float, metavar="SECONDS",
                   help=f"seconds between windows, {HOP_RANGE[0]}-{HOP_RANGE[1]} (default 1.0)")
    p.add_argument("--checkpoint", metavar="PATH", help="model checkpoint (default: the bundled one)")
    p.add_argument("--inference", metavar="MODE",
                   help="network path on a GPU: auto (default; every path timed and checked against fp32 at "
                        "start-up) or a fixed mode such as compile-fp16-tail (a wrong name lists them)")
    p.add_argument("--processes", type=int, metavar="K",
                   help="spread the sources over K daemon processes on the same devices, joined on --pub and "
                        "--replay (default 1; for hundreds of streams, where one process's core is the limit)")
    p.add_argument("--log-dir", metavar="DIR", help="event log folder ('' = no log and no replay)")
    p.add_argument("--pitch-policy", choices=PITCH_POLICIES,
                   help="newest pitch frames: hold the last final f0 (default) or delay the window until final")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="stderr log level (default info)")
    p.add_argument("--curve-key", metavar="FILE",
                   help="the daemon's CurveZMQ secret certificate (`instrumentd keys DIR` makes DIR/server.key_secret): "
                        "every endpoint encrypted, only clients with the public key get in")
    p.add_argument("--curve-clients", metavar="DIR",
                   help="only clients whose public certificate (*.key) is in DIR get in (e.g. DIR/clients)")
    p.add_argument("--insecure", action="store_true", default=None,
                   help="allow a --pub or --replay endpoint other machines can reach, in clear text, without keys")
    p.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve Prometheus /metrics and the /healthz, /readyz probes over HTTP there, e.g. "
                        "127.0.0.1:9108 (default off; another machine's address needs --insecure)")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="named defaults under every other setting: live = a window every 0.25 s, no moving "
                        "average, thresholds 0.25/0.15: changes announced sooner, for a performer "
                        "(docs/PERFORMANCE.md)")
    p.add_argument("--print-config", action="store_true", help="print the resulting configuration as TOML and exit")
    p.set_defaults(run=run)


def build_config(args: argparse.Namespace):
    """The Config these flags, the --config file and the environment make."""
    from .config import load_config

    return load_config(args.config, sources=args.source, pub=args.pub, replay=args.replay, device=args.device,
                hop=args.hop, checkpoint=args.checkpoint, inference=args.inference, log_dir=args.log_dir,
                pitch_policy=args.pitch_policy, log_level=args.log_level, curve_key=args.curve_key,
                curve_clients=args.curve_clients, insecure=args.insecure, processes=args.processes,
                metrics=args.metrics, preset=args.preset)


def run(args: argparse.Namespace) -> int:
    config = build_config(args)
    if args.print_config:
        sys.stdout.write(config.to_toml())
        return 0
    level = "debug" if getattr(args, "verbose", 0) >= 2 else config.log_level
    logging.getLogger("instrumentd").setLevel(level.upper())
    from .group import run_group
    from .server import EXIT_STARTUP, STARTUP_FAILURES, Server

    try:
        return run_group(config) if config.processes > 1 else Server(config).run()
    except STARTUP_FAILURES as exc:
        print(f"instrumentd serve: error: {exc}", file=sys.stderr)
        return EXIT_STARTUP
