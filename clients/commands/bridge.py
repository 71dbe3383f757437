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
        ARGUMENTS[name](sp)
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


def _mqtt_arguments(p: argparse.ArgumentParser) -> None:
    from instrumentd.clients.bridge_mqtt import DEFAULT_BROKER, ENV_PASSWORD, ENV_USERNAME

    p.add_argument("--broker", metavar="URL", help=f"mqtt://HOST[:PORT] or mqtts://HOST[:PORT] for TLS (default {DEFAULT_BROKER})")
    p.add_argument("--replay", action="append", metavar="ENDPOINT",
                   help="fill seq gaps from this replay endpoint (e.g. tcp://127.0.0.1:5556), repeatable, "
                        "so that a missed segment does not leave a wrong retained state")
    p.add_argument("--prefix", metavar="TOPIC", help="topic prefix (default instrumentd)")
    p.add_argument("--qos", type=int, metavar="N", help="QoS of window and segment messages, 0-2 (default 0)")
    p.add_argument("--client-id", metavar="ID", help="MQTT client id (default: one the broker assigns)")
    p.add_argument("--username", metavar="NAME", help=f"broker user (default ${ENV_USERNAME})")
    p.add_argument("--password", metavar="PASSWORD",
                   help=f"broker password (default ${ENV_PASSWORD}; the environment keeps it out of `ps`)")
    p.add_argument("--ca-file", metavar="FILE", help="CA certificate(s) to verify an mqtts:// broker (default: the system's)")
    p.add_argument("--cert", metavar="FILE", help="client certificate for an mqtts:// broker that asks for one")
    p.add_argument("--key", metavar="FILE", help="the client certificate's private key")
    p.add_argument("--ha-discovery", action="store_true", default=None,
                   help="announce each stream to Home Assistant (MQTT discovery) as a device with sensors")
    p.add_argument("--ha-prefix", metavar="TOPIC", help="Home Assistant's discovery prefix (default homeassistant)")


def _osc_arguments(p: argparse.ArgumentParser) -> None:
    from instrumentd.clients.bridge_osc import DEFAULT_OSC

    p.add_argument("--osc", metavar="URL", help=f"the receiver, udp://HOST:PORT (default {DEFAULT_OSC})")
    p.add_argument("--prefix", metavar="ADDRESS", help="address prefix (default /instrumentd)")


ARGUMENTS = {"mqtt": _mqtt_arguments, "osc": _osc_arguments}  # each bridge's own flags, one per Settings field
