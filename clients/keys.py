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

import re
import shutil
from pathlib import Path

CLIENTS_FOLDER = "clients"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


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
