"""``instrumentd bridge mqtt|osc``: carry the daemons' events on (see :mod:`instrumentd.clients.bridge`)."""

from __future__ import annotations

import argparse
import importlib

from instrumentd.clients.bridge import BRIDGES

from .options import add_connect_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bridge",
        help="carry the events to MQTT (Home Assistant) or OSC (TouchDesigner, Max)",
        description=(
            "Subscribe to one or more daemons and carry their events on: `bridge mqtt` to an MQTT broker "
            "(with Home Assistant discovery), `bridge osc` to an OSC receiver over UDP. Each reconnects by "
            "itself; settings may also come from the [bridge.mqtt] or [bridge.osc] table of a TOML file."
        ),
    )
    kinds = p.add_subparsers(dest="bridge", metavar="KIND", required=True)
    for name, module_name in BRIDGES.items():
        module = importlib.import_module(module_name)
        sp = kinds.add_parser(name, help=module.HELP, description=module.DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        add_connect_argument(sp)
        sp.add_argument("--stream", action="append", metavar="NAME", help="only this stream (repeatable)")
        sp.add_argument("--config", metavar="FILE", help=f"TOML file whose [bridge.{name}] table holds these settings "
                                                          "(flags win over it)")
        module.add_arguments(sp)
        sp.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from instrumentd.clients.bridge import carry, load_settings
    from instrumentd.daemon.security import client_context

    module = importlib.import_module(BRIDGES[args.bridge])
    settings = load_settings(module.Settings, args.config, vars(args), f"bridge.{args.bridge}")
    client_context(args.server_key, args.client_key)
    print(f"instrumentd bridge {args.bridge}: {carry(args.bridge, settings)}", file=sys.stderr)
    return 0
