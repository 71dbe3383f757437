"""``instrumentd keys``: CurveZMQ certificates for a daemon and its clients (see :mod:`instrumentd.clients.keys`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "keys",
        help="make CurveZMQ certificates so a daemon can publish beyond this machine, encrypted",
        usage="instrumentd keys DIR [--client NAME]...\n       instrumentd keys add-client NAME --dir DIR",
        description=(
            "Make CurveZMQ certificates in DIR: server.key and server.key_secret for the daemon, "
            "NAME.key and NAME.key_secret for each client, and DIR/clients with the clients' public "
            "certificates. Then: instrumentd serve --pub tcp://0.0.0.0:5555 --curve-key DIR/server.key_secret "
            "--curve-clients DIR/clients ...; instrumentd tail --connect tcp://HOST:5555 --server-key "
            "DIR/server.key --client-key DIR/client.key_secret. `keys add-client NAME --dir DIR` adds one "
            "more client to DIR later, leaving the daemon's pair alone; a running daemon lets it in at its "
            "next handshake."
        ),
    )
    p.add_argument("words", nargs="+", metavar="DIR",
                   help="folder for new certificates (created), or: add-client NAME")
    p.add_argument("--client", action="append", metavar="NAME",
                   help="a client to make a certificate for, repeatable (default: one named client)")
    p.add_argument("--dir", metavar="DIR", help="with add-client: the folder made by `instrumentd keys DIR`")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from instrumentd.clients.keys import CLIENTS_FOLDER, add_client, make_keys
    from instrumentd.pipeline.errors import ParameterError

    if args.words[0] == "add-client":
        if len(args.words) != 2 or not args.dir or args.client:
            raise ParameterError("usage: instrumentd keys add-client NAME --dir DIR")
        clients, folder = [args.words[1]], Path(args.dir)
        written = add_client(folder, clients[0])
    else:
        if len(args.words) != 1 or args.dir:
            raise ParameterError("usage: instrumentd keys DIR [--client NAME]... (or keys add-client NAME --dir DIR)")
        clients, folder = args.client or ["client"], Path(args.words[0])
        written = make_keys(folder, clients)
    for path in written:
        print(path)
    first = clients[0]
    print(f"daemon:  instrumentd serve --curve-key {folder / 'server.key_secret'} "
          f"--curve-clients {folder / CLIENTS_FOLDER} --pub tcp://0.0.0.0:5555 ...", file=sys.stderr)
    print(f"clients: instrumentd tail --connect tcp://HOST:5555 --server-key {folder / 'server.key'} "
          f"--client-key {folder / (first + '.key_secret')}", file=sys.stderr)
    return 0
