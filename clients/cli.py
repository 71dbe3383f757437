"""The ``instrumentd`` command: one parser, one subcommand per module.

Each module named in :data:`COMMANDS` (all in :mod:`instrumentd.clients.commands` but ``bench``,
whose benchmarks own their flags) has ``register(subparsers)``, which adds its parser and sets
``run=function(args) -> exit code`` as default. Modules import heavy libraries (torch, zmq)
inside ``run`` so that ``--help`` stays fast. An :class:`InstrumentdError` stops the command
with one line on stderr and its ``exit_code`` (see :data:`EPILOG`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from instrumentd import __version__
from instrumentd.pipeline.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, InstrumentdError

COMMANDS: dict[str, str] = {
    "classify": "instrumentd.clients.commands.classify",
    "model-summary": "instrumentd.clients.commands.model_summary",
    "serve": "instrumentd.clients.commands.serve",
    "tail": "instrumentd.clients.commands.tail",
    "record": "instrumentd.clients.commands.record",
    "dashboard": "instrumentd.clients.commands.dashboard",
    "proxy": "instrumentd.clients.commands.proxy",
    "keys": "instrumentd.clients.commands.keys",
    "bridge": "instrumentd.clients.commands.bridge",
    "devices": "instrumentd.clients.commands.devices",
    "bench": "instrumentd.clients.bench",
    "web": "instrumentd.clients.commands.web",
    "synth": "instrumentd.clients.commands.synth",
    "synth-stems": "instrumentd.clients.commands.synth_stems",
    "synth-nonmusic": "instrumentd.clients.commands.synth_nonmusic",
    "prepare": "instrumentd.clients.commands.prepare",
    "train": "instrumentd.clients.commands.train",
    "evaluate": "instrumentd.clients.commands.evaluate",
    "calibrate": "instrumentd.clients.commands.calibrate",
    "interpolate": "instrumentd.clients.commands.interpolate",
    "ablation": "instrumentd.clients.commands.ablation",
}

EPILOG = (
    "exit codes: 0 done; 1 failed while running (some input could not be processed, serving failed, "
    "or an unexpected error, printed with its traceback); 2 bad flags, settings or input named on the "
    "command line; 3 could not start (endpoint taken, log folder locked or not writable, not enough "
    "memory or open files); 130 interrupted (Ctrl-C)."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instrumentd",
        description="Real-time predominant-instrument recognition: audio streams in, instrument events out.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"instrumentd {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from instrumentd.daemon.service import use_writable_caches

    use_writable_caches()  # before anything imports librosa or torch (a service account has no home)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.run(args)
    except InstrumentdError as exc:
        print(f"instrumentd {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader of our stdout went away (| head): not an error
        sys.stderr.close()
        return EXIT_OK
