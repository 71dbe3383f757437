"""What a service manager needs from the daemon: systemd's notify protocol and a writable cache.

``Type=notify`` units pass ``NOTIFY_SOCKET``, a datagram unix socket (a path, or ``@name`` in the
abstract namespace) to which the daemon sends ``READY=1`` once it serves, ``WATCHDOG=1`` at least
every half ``WATCHDOG_USEC`` while its loop runs, and ``STOPPING=1`` when it stops. Without
``NOTIFY_SOCKET`` nothing is sent. It is a few lines of socket code, so no systemd library.

numba (librosa's pYIN helpers) caches compiled functions next to the installed sources or in
``~/.cache``; an unprivileged service with a read-only install and no home has neither, and numba
then fails at import. :func:`use_writable_numba_cache` points ``NUMBA_CACHE_DIR`` at a folder the
process can write before anything imports numba.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

__all__ = ["Notifier", "notify", "use_writable_numba_cache"]


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


def use_writable_numba_cache() -> None:
    """Set ``NUMBA_CACHE_DIR`` (unless set) to the first writable of ``$CACHE_DIRECTORY/numba``
    (systemd's CacheDirectory=), ``$XDG_CACHE_HOME`` or ``~/.cache`` ``/instrumentd/numba``, and a
    per-user folder under the temporary folder. Call before numba is imported."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    candidates = []
    if os.environ.get("CACHE_DIRECTORY"):
        candidates.append(Path(os.environ["CACHE_DIRECTORY"].split(":")[0]) / "numba")
    home = os.environ.get("XDG_CACHE_HOME") or (os.path.expanduser("~/.cache") if "HOME" in os.environ else "")
    if home:
        candidates.append(Path(home) / "instrumentd" / "numba")
    candidates.append(Path(tempfile.gettempdir()) / f"instrumentd-numba-{os.getuid()}")
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError:
            continue
        if os.access(folder, os.W_OK | os.X_OK) and folder.stat().st_uid == os.getuid():
            os.environ["NUMBA_CACHE_DIR"] = str(folder)
            return
