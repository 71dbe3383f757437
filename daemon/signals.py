"""One way to catch signals, uvicorn's: handlers only set flags, the originals come back afterwards,
and a second Ctrl-C forces exit.

``serve``, ``serve --processes``, ``proxy``, ``record`` and ``dashboard`` all run inside
``with Signals() as signals:`` and poll :attr:`Signals.should_exit` (or wait on
:attr:`Signals.stop`) from their loop. SIGINT, SIGTERM and SIGHUP (the terminal closed) all ask
for the same clean stop; a second SIGINT sets :attr:`Signals.force_exit`, which the shutdown
checks to skip what it would otherwise finish.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

__all__ = ["HANDLED_SIGNALS", "Signals"]

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Signals:
    """Captures :data:`HANDLED_SIGNALS` inside a ``with`` block (on the main thread; elsewhere it
    installs nothing and only its flags can be set).

    Attributes
    ----------
    should_exit : a signal asked for a clean stop
    force_exit : a second SIGINT came: stop without finishing
    received : the first signal's name (``"SIGTERM"``), "" before any
    stop : a threading.Event set with ``should_exit``, for loops that wait
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = HANDLED_SIGNALS):
        self.signals = signals
        self.should_exit = False
        self.force_exit = False
        self.received = ""
        self.stop = threading.Event()
        self._original: dict[int, Any] = {}

    def __enter__(self) -> "Signals":
        if threading.current_thread() is threading.main_thread():
            self._original = {sig: signal.signal(sig, self.handle) for sig in self.signals}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._original.items():
            signal.signal(sig, handler)
        self._original = {}

    def handle(self, sig: int, frame: FrameType | None = None) -> None:
        """The handler: flags only (a second SIGINT forces)."""
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True
            self.received = self.received or signal.Signals(sig).name
        self.stop.set()
