"""What a service manager needs from the daemon: systemd's notify protocol and a writable cache.

``Type=notify`` units pass ``NOTIFY_SOCKET``, a datagram unix socket (a path, or ``@name`` in the
abstract namespace) to which the daemon sends ``READY=1`` once it serves, ``WATCHDOG=1`` at least
every half ``WATCHDOG_USEC`` while its loop runs, and ``STOPPING=1`` when it stops. Without
``NOTIFY_SOCKET`` nothing is sent. It is a few lines of socket code, so no systemd library.

The compilers the daemon uses keep their compiled code in the user's home: numba (librosa's pYIN
helpers) next to the installed sources or in ``~/.cache``, Triton (the pitch kernels on a GPU) in
``~/.triton/cache``, TorchInductor (``--inference compile*``) in the temporary folder. An unprivileged
service with a read-only install and no home has none of the first two: numba fails at import and
Triton at the first kernel (it cannot make its cache folder); and a private temporary folder
(systemd's ``PrivateTmp=``) is new at each start, so every start compiles again.
:func:`use_writable_caches` points each at a folder the process can write, before anything imports them.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

__all__ = ["CACHES", "Notifier", "notify", "use_writable_caches"]


def notify(state: str) -> bool:
    """Send ``state`` (``"READY=1"``, ``"WATCHDOG=1"``...) to ``$NOTIFY_SOCKET``; False when there is none."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError:
            return False
    return True


class Notifier:
    """READY, WATCHDOG and STOPPING for one daemon; :meth:`tick` from the loop sends the watchdog
    ping every half ``WATCHDOG_USEC`` (if ``WATCHDOG_PID`` is set, only in that process)."""

    def __init__(self) -> None:
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and mine else None  # seconds
        self._last = 0.0

    def ready(self, status: str) -> None:
        notify(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")
        self._last = time.monotonic()

    def tick(self) -> None:
        if self.interval is not None and time.monotonic() - self._last >= self.interval:
            notify("WATCHDOG=1")
            self._last = time.monotonic()

    def stopping(self) -> None:
        notify("STOPPING=1")


# environment variable -> folder under the cache: where each compiler keeps what it compiled
CACHES = {"NUMBA_CACHE_DIR": "numba", "TRITON_CACHE_DIR": "triton", "TORCHINDUCTOR_CACHE_DIR": "inductor"}


def use_writable_caches() -> None:
    """Set each of :data:`CACHES` that is not set to its folder under the first writable of
    ``$CACHE_DIRECTORY`` (systemd's CacheDirectory=), ``$XDG_CACHE_HOME/instrumentd`` or
    ``~/.cache/instrumentd``, and a per-user folder under the temporary folder. Call before numba,
    Triton or torch are imported."""
    unset = [name for name in CACHES if not os.environ.get(name)]
    if not unset:
        return
    candidates = []
    if os.environ.get("CACHE_DIRECTORY"):
        candidates.append(Path(os.environ["CACHE_DIRECTORY"].split(":")[0]))
    home = os.environ.get("XDG_CACHE_HOME") or (os.path.expanduser("~/.cache") if "HOME" in os.environ else "")
    if home:
        candidates.append(Path(home) / "instrumentd")
    candidates.append(Path(tempfile.gettempdir()) / f"instrumentd-cache-{os.getuid()}")
    for base in candidates:
        folders = {name: base / CACHES[name] for name in unset}
        try:
            for folder in folders.values():
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError:
            continue
        if all(os.access(f, os.W_OK | os.X_OK) and f.stat().st_uid == os.getuid() for f in folders.values()):
            for name, folder in folders.items():
                os.environ[name] = str(folder)
            return
