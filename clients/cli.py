"""The ``instrumentd`` command: one parser, one subcommand per module.

Each module named in :data:`COMMANDS` has ``register(subparsers)``, which adds its parser and
sets ``run=function(args) -> exit code`` as default. Modules import heavy libraries (torch,
zmq) inside ``run`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from instrumentd import __version__

COMMANDS: dict[str, str] = {
    "classify": "instrumentd.clients.classify",
    "model-summary": "instrumentd.clients.commands.model_summary",
    "serve": "instrumentd.clients.commands.serve",
    "tail": "instrumentd.clients.tail",
    "record": "instrumentd.clients.record",
    "dashboard": "instrumentd.clients.dashboard",
    "proxy": "instrumentd.clients.proxy",
    "keys": "instrumentd.clients.keys",
    "bridge": "instrumentd.clients.bridge",
    "devices": "instrumentd.clients.devices",
    "bench": "instrumentd.clients.bench",
    "web": "instrumentd.clients.web",
    "synth": "instrumentd.clients.commands.synth",
    "synth-stems": "instrumentd.clients.commands.synth_stems",
    "synth-nonmusic": "instrumentd.clients.commands.synth_nonmusic",
    "prepare": "instrumentd.clients.commands.prepare",
    "train": "instrumentd.clients.commands.train",
    "evaluate": "instrumentd.clients.commands.evaluate",
    "ablation": "instrumentd.clients.commands.ablation",
}

EXIT_OK = 0
EXIT_ERROR = 1  # a runtime failure the user did not cause
EXIT_USAGE = 2  # bad input: argparse's own code for usage errors
EXIT_STARTUP = 3  # serve could not start: log folder locked or unwritable, endpoint taken, not enough memory
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instrumentd",
        description="Real-time predominant-instrument recognition: audio streams in, instrument events out.",
    )
    parser.add_argument("--version", action="version", version=f"instrumentd {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from instrumentd.daemon.service import use_writable_numba_cache
    from instrumentd.pipeline.errors import InstrumentdError

    use_writable_numba_cache()  # before anything imports librosa (a service account has no home)
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
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader of our stdout went away (| head): not an error
        sys.stderr.close()
        return EXIT_OK
