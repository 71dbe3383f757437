"""The one signal helper, with real signals: flags only, originals restored, a second Ctrl-C forces,
nothing installed off the main thread."""

from __future__ import annotations

import os
import signal
import threading
import time

from instrumentd.daemon.signals import HANDLED_SIGNALS, Signals


def _deliver(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.01)  # the handler runs at the next bytecode on the main thread


def test_handlers_only_set_flags_and_the_originals_come_back():
    before = {sig: signal.getsignal(sig) for sig in HANDLED_SIGNALS}
    with Signals() as signals:
        assert all(signal.getsignal(sig) == signals.handle for sig in HANDLED_SIGNALS)
        _deliver(signal.SIGHUP)
        assert signals.should_exit and not signals.force_exit and signals.received == "SIGHUP"
        assert signals.stop.is_set()
        _deliver(signal.SIGTERM)  # a second SIGTERM asks again, it does not force
        assert not signals.force_exit and signals.received == "SIGHUP"
        _deliver(signal.SIGINT)  # a second Ctrl-C forces
        assert signals.force_exit
    assert {sig: signal.getsignal(sig) for sig in HANDLED_SIGNALS} == before


def test_one_ctrl_c_asks_two_force():
    with Signals() as signals:
        _deliver(signal.SIGINT)
        assert signals.should_exit and not signals.force_exit and signals.received == "SIGINT"
        _deliver(signal.SIGINT)
        assert signals.force_exit


def test_off_the_main_thread_nothing_is_installed_and_the_flags_still_work():
    before = {sig: signal.getsignal(sig) for sig in HANDLED_SIGNALS}
    seen = {}

    def in_a_thread():
        with Signals() as signals:
            seen["installed"] = {sig: signal.getsignal(sig) for sig in HANDLED_SIGNALS}
            signals.handle(signal.SIGTERM)
            seen["flags"] = (signals.should_exit, signals.received, signals.stop.is_set())

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(5)
    assert seen == {"installed": before, "flags": (True, "SIGTERM", True)}
