"""``instrumentd serve``: the streaming daemon's command line (flags -> Config -> Server).

Every :class:`~instrumentd.daemon.config.Config` field is a flag, made from the field: its name
(``max_batch`` -> ``--max-batch``), type, help and, for the settings in
:data:`~instrumentd.daemon.config.CHOICES`, its choices.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from instrumentd.daemon.config import CHOICES, Config

DESCRIPTION = (
    "Listen to one or more audio streams and publish, every --hop seconds per stream, the "
    "predominant instrument of the last 3 s as JSON events on a ZeroMQ PUB socket (topics "
    "window.<stream>, segment.<stream>, source.<stream>, status; docs/events.md). Events are logged "
    "first and can be replayed from --replay. Settings come from the defaults, then --preset, then "
    "--config FILE, then INSTRUMENTD_<SETTING> environment variables, then these flags. SIGINT, SIGTERM "
    "and SIGHUP (the terminal closed) finish the windows already heard, publish them, close the open "
    "segments and exit 0; a second Ctrl-C exits without finishing. Exit codes: 0 stopped or every source "
    "ended, 1 failed while serving, 2 bad flags, settings, checkpoint or sources, 3 could not start "
    "(log folder locked by another daemon or not writable, endpoint taken, not enough memory or open files)."
)
EPILOG = (
    "SPEC: mic[:DEVICE] | file:PATH (real time) | file+fast:PATH | stdin:FORMAT:RATE:CHANNELS "
    "(FORMAT s16le s32le f32le f64le u8) | ffmpeg:URL. Example: instrumentd serve --source "
    "studio=mic --source radio=ffmpeg:https://example.org/stream.mp3"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="run the streaming daemon: audio streams in, instrument events out over ZeroMQ",
        description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--config", metavar="FILE", help="TOML file with any of the settings --print-config shows")
    for field in dataclasses.fields(Config):
        add_setting(p, field)
    p.add_argument("--print-config", action="store_true", help="print the resulting configuration as TOML and exit")
    p.set_defaults(run=run)


def add_setting(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
    """The flag of one Config field; not given, it is None, so that the file and the environment show through."""
    meta = field.metadata
    flag = meta["flag"] or "--" + field.name.replace("_", "-")
    default = meta["shown"] or field.default
    kw = {"dest": field.name, "default": None,
          "help": meta["help"] + (f" (default {default})" if default not in ("", False, dataclasses.MISSING) else "")}
    if field.type in (bool, "bool"):
        parser.add_argument(flag, action="store_true", **kw)
        return
    if field.type in (list[str], "list[str]"):
        kw.update(action="append")
    elif field.type in (int, "int", float, "float"):
        kw.update(type=int if field.type in (int, "int") else float)
    if field.name in CHOICES:
        kw.update(choices=CHOICES[field.name], metavar="|".join(filter(None, CHOICES[field.name])))
    elif meta["metavar"]:
        kw.update(metavar=meta["metavar"])
    parser.add_argument(flag, **kw)


def run(args: argparse.Namespace) -> int:
    from instrumentd.daemon.config import load_config

    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)}
    config = load_config(args.config, **settings)
    if args.print_config:
        sys.stdout.write(config.to_toml())
        return 0
    level = "debug" if getattr(args, "verbose", 0) >= 2 else config.log_level
    logging.getLogger("instrumentd").setLevel(level.upper())
    if config.processes > 1:  # the group's parent runs no model: torch loads in its daemons only
        from instrumentd.daemon.group import run_group

        return run_group(config)
    from instrumentd.daemon.server import Server

    return Server(config).run()
