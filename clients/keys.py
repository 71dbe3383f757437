"""``instrumentd keys DIR``: CurveZMQ certificates for a daemon and its clients (pyzmq's zmq.auth).

Makes, in DIR (created, owner-only):

* ``server.key`` / ``server.key_secret``: the daemon's pair. The daemon gets the secret one
  (``--curve-key``); every client gets the public one (``--server-key``).
* ``<client>.key`` / ``<client>.key_secret`` for each ``--client`` name (default ``client``): a client
  keeps its secret one (``--client-key``); the public one is copied into ``DIR/clients``, the folder
  the daemon's ``--curve-clients`` lets in.

``instrumentd keys add-client NAME --dir DIR`` adds one client to an existing DIR, leaving the
daemon's pair alone; a running daemon lets it in at its next handshake. Existing certificates are
never overwritten. Secret files are readable by their owner only.
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


def make_keys(folder: str | Path, clients: list[str]) -> list[Path]:
    """Write the daemon's and each client's certificates into ``folder``; returns the files written.

    Raises
    ------
    ParameterError
        A bad client name, or a certificate that already exists (nothing is written then).
    """
    from instrumentd.pipeline.errors import ParameterError

    folder = Path(folder)
    names = ["server", *clients]
    _check_names(clients)
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
    except OSError as exc:
        raise ParameterError(f"{folder}: cannot write certificates ({_why(exc)})") from None
    _write(folder, names)
    return planned


def add_client(folder: str | Path, name: str) -> list[Path]:
    """Make one more client's certificates in ``folder`` (made by :func:`make_keys`) without touching
    the daemon's; returns the files written.

    Raises
    ------
    ParameterError
        No daemon certificate in ``folder``, a bad name, or a client of that name already there.
    """
    from instrumentd.pipeline.errors import ParameterError

    folder = Path(folder)
    if not (folder / "server.key").is_file():
        raise ParameterError(f"{folder}: no server.key there; make the daemon's keys first with `instrumentd keys {folder}`")
    _check_names([name])
    planned = [folder / f"{name}.key", folder / f"{name}.key_secret", folder / CLIENTS_FOLDER / f"{name}.key"]
    taken = [str(p) for p in planned if p.exists()]
    if taken:
        raise ParameterError(f"{taken[0]} exists; certificates are never overwritten (choose another name)")
    try:
        (folder / CLIENTS_FOLDER).mkdir(exist_ok=True)
    except OSError as exc:
        raise ParameterError(f"{folder}: cannot write certificates ({_why(exc)})") from None
    _write(folder, [name])
    return planned


def _check_names(clients: list[str]) -> None:
    from instrumentd.pipeline.errors import ParameterError

    for name in clients:
        if not NAME.fullmatch(name) or name == "server":
            raise ParameterError(f"client {name!r}: a name is 1-64 letters, digits, '_' or '-', and not 'server'")


def _why(exc: OSError) -> str:
    import errno

    return "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) else (exc.strerror or str(exc))


def _write(folder: Path, names: list[str]) -> None:
    """Certificates for ``names`` in ``folder``: secrets 0600, clients' public ones copied to ``clients/``."""
    import zmq.auth

    from instrumentd.pipeline.errors import ParameterError

    try:
        for name in names:
            public, secret = zmq.auth.create_certificates(folder, name)
            Path(secret).chmod(0o600)
            if name != "server":
                shutil.copyfile(public, folder / CLIENTS_FOLDER / f"{name}.key")
    except OSError as exc:
        raise ParameterError(f"{folder}: cannot write certificates ({_why(exc)})") from None


def run(args: argparse.Namespace) -> int:
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
