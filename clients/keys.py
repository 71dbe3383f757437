"""``instrumentd keys DIR``: CurveZMQ certificates for a daemon and its clients (pyzmq's zmq.auth).

Makes, in DIR (created, owner-only):

* ``server.key`` / ``server.key_secret``: the daemon's pair. The daemon gets the secret one
  (``--curve-key``); every client gets the public one (``--server-key``).
* ``<client>.key`` / ``<client>.key_secret`` for each ``--client`` name (default ``client``): a client
  keeps its secret one (``--client-key``); the public one is copied into ``DIR/clients``, the folder
  the daemon's ``--curve-clients`` lets in.

Existing certificates are never overwritten. Secret files are readable by their owner only.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

CLIENTS_FOLDER = "clients"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "keys",
        help="make CurveZMQ certificates so a daemon can publish beyond this machine, encrypted",
        description=(
            "Make CurveZMQ certificates in DIR: server.key and server.key_secret for the daemon, "
            "NAME.key and NAME.key_secret for each client, and DIR/clients with the clients' public "
            "certificates. Then: instrumentd serve --pub tcp://0.0.0.0:5555 --curve-key DIR/server.key_secret "
            "--curve-clients DIR/clients ...; instrumentd tail --connect tcp://HOST:5555 --server-key "
            "DIR/server.key --client-key DIR/client.key_secret."
        ),
    )
    p.add_argument("dir", metavar="DIR", help="folder for the certificates (created)")
    p.add_argument("--client", action="append", metavar="NAME",
                   help="a client to make a certificate for, repeatable (default: one named client)")
    p.set_defaults(run=run)


def make_keys(folder: str | Path, clients: list[str]) -> list[Path]:
    """Write the daemon's and each client's certificates into ``folder``; returns the files written.

    Raises
    ------
    ParameterError
        A bad client name, or a certificate that already exists (nothing is written then).
    """
    import zmq.auth

    from instrumentd.pipeline.errors import ParameterError

    folder = Path(folder)
    names = ["server", *clients]
    for name in clients:
        if not NAME.fullmatch(name) or name == "server":
            raise ParameterError(f"--client {name!r}: a name is 1-64 letters, digits, '_' or '-', and not 'server'")
    if len(set(names)) != len(names):
        raise ParameterError(f"--client names repeat: {', '.join(clients)}")
    planned = [folder / f"{n}.{ext}" for n in names for ext in ("key", "key_secret")]
    planned += [folder / CLIENTS_FOLDER / f"{n}.key" for n in clients]
    taken = [str(p) for p in planned if p.exists()]
    if taken:
        raise ParameterError(f"{taken[0]} exists; certificates are never overwritten (choose another DIR)")
    try:
        (folder / CLIENTS_FOLDER).mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        for name in names:
            public, secret = zmq.auth.create_certificates(folder, name)
            Path(secret).chmod(0o600)
            if name != "server":
                shutil.copyfile(public, folder / CLIENTS_FOLDER / f"{name}.key")
    except OSError as exc:
        raise ParameterError(f"{folder}: cannot write certificates ({exc.strerror})") from None
    return planned


def run(args: argparse.Namespace) -> int:
    clients = args.client or ["client"]
    written = make_keys(args.dir, clients)
    folder = Path(args.dir)
    for path in written:
        print(path)
    first = clients[0]
    print(f"daemon:  instrumentd serve --curve-key {folder / 'server.key_secret'} "
          f"--curve-clients {folder / CLIENTS_FOLDER} --pub tcp://0.0.0.0:5555 ...", file=sys.stderr)
    print(f"clients: instrumentd tail --connect tcp://HOST:5555 --server-key {folder / 'server.key'} "
          f"--client-key {folder / (first + '.key_secret')}", file=sys.stderr)
    return 0
