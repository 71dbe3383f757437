"""What a service manager needs: systemd's notify protocol on a real datagram socket, a writable numba cache."""

from __future__ import annotations

import os
import tempfile
import time

import pytest

from instrumentd.daemon.service import CACHES, Notifier, notify, use_writable_caches

from .conftest import NotifySocket


@pytest.mark.parametrize("abstract", [False, True])
def test_notify_speaks_the_datagram_protocol(monkeypatch, abstract):
    sock = NotifySocket(abstract)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", sock.address)
        monkeypatch.setenv("WATCHDOG_USEC", "20000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        notifier = Notifier()
        assert notifier.interval == 0.01
        notifier.ready("serving 1 stream(s)")
        first = sock.wait_for("READY=1", 5)[-1].split("\n")
        assert f"MAINPID={os.getpid()}" in first and "STATUS=serving 1 stream(s)" in first
        time.sleep(0.02)
        notifier.tick()
        assert sock.wait_for("WATCHDOG=1", 5)
        monkeypatch.setenv("WATCHDOG_PID", "1")  # the watchdog is for another process
        assert Notifier().interval is None
        monkeypatch.delenv("NOTIFY_SOCKET")
        assert notify("READY=1") is False
    finally:
        sock.close()


def test_the_compilers_get_writable_caches_when_there_is_no_home(monkeypatch, tmp_path):
    """numba, Triton and TorchInductor each get a folder the process can write: systemd's CacheDirectory=,
    else one in the home, else one under the temporary folder; one set already is left alone."""
    for name in (*CACHES, "CACHE_DIRECTORY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "home").write_text("a file: no folder can be made under it, not even by root")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    use_writable_caches()
    base = tmp_path / f"instrumentd-cache-{os.getuid()}"
    assert {name: os.environ[name] for name in CACHES} == {
        "NUMBA_CACHE_DIR": str(base / "numba"), "TRITON_CACHE_DIR": str(base / "triton"),
        "TORCHINDUCTOR_CACHE_DIR": str(base / "inductor")}
    assert all((base / folder).is_dir() for folder in CACHES.values())
    for name in CACHES:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "cache"))  # systemd's CacheDirectory= comes first
    use_writable_caches()
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "cache" / "numba")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "inductor")
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "mine")


def test_without_a_notify_socket_nothing_is_sent_and_the_notifier_is_quiet(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert notify("READY=1") is False
    notifier = Notifier()
    assert notifier.interval is None
    notifier.ready("x"), notifier.tick(), notifier.stopping()  # no socket: each returns without sending


def test_a_relative_notify_address_is_ignored(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/notify")
    assert notify("READY=1") is False


def test_stopping_is_sent(notify_socket):
    Notifier().stopping()
    assert notify_socket.wait_for("STOPPING=1", 5)[-1] == "STOPPING=1"
