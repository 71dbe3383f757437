"""BackgroundFsync: real files fsynced, and real filesystems synced (syncfs), in its own thread; the
caller never waits, closes its files at once, and a batch handed over while one is syncing replaces
the one waiting."""

import os
import threading

import pytest

from instrumentd.daemon import fsyncer
from instrumentd.daemon.fsyncer import BackgroundFsync


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def watch_fsync(monkeypatch, gate: threading.Event | None = None, entered: threading.Event | None = None) -> list[str]:
    """Record the thread of every real fsync; with ``gate``, the first one sets ``entered`` and waits for it."""
    threads, real = [], os.fsync

    def fsync(fd):
        if gate is not None and not threads:
            entered.set()
            gate.wait(10)
        threads.append(threading.current_thread().name)
        real(fd)

    monkeypatch.setattr(fsyncer.os, "fsync", fsync)
    return threads


def test_files_are_synced_in_the_background_after_the_caller_closed_them(tmp_path, monkeypatch):
    threads = watch_fsync(monkeypatch)
    before = open_fds()
    files = [open(tmp_path / f"s{i}.jsonl", "ab") for i in range(3)]
    for f in files:
        f.write(b'{"seq": 0}\n')
        f.flush()
    syncer = BackgroundFsync("test log")
    syncer.submit([f.fileno() for f in files])
    for f in files:
        f.close()
    syncer.close()
    assert threads == ["fsync"] * 3
    assert open_fds() == before  # the duplicates are closed too


def test_a_newer_batch_replaces_the_one_waiting(tmp_path, monkeypatch):
    gate, entered = threading.Event(), threading.Event()
    threads = watch_fsync(monkeypatch, gate, entered)
    before = open_fds()
    with open(tmp_path / "a.jsonl", "ab") as f:
        syncer = BackgroundFsync("test log")
        syncer.submit([f.fileno()])  # its fsync waits at the gate
        assert entered.wait(10)
        syncer.submit([f.fileno()])  # waits, then is replaced
        syncer.submit([f.fileno()])
        gate.set()
        syncer.close()
    assert len(threads) == 2  # the first batch and the last: the middle one was replaced
    assert open_fds() == before


@pytest.mark.skipif(not fsyncer.HAS_SYNCFS, reason="no syncfs(2) here")
def test_a_filesystem_is_synced_in_one_call_in_the_background(tmp_path, monkeypatch):
    threads = watch_fsync(monkeypatch)
    synced, real = [], fsyncer.syncfs
    monkeypatch.setattr(fsyncer, "syncfs", lambda fd: (synced.append((threading.current_thread().name,
                                                                        os.fstat(fd).st_ino)), real(fd)))
    before = open_fds()
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    with open(tmp_path / "a.jsonl", "ab") as f:
        f.write(b'{"seq": 0}\n')
        syncer = BackgroundFsync("test log")
        syncer.submit([f.fileno()], filesystems=[folder])
    os.close(folder)
    syncer.close()
    assert synced == [("fsync", tmp_path.stat().st_ino)] and threads == ["fsync"]
    assert open_fds() == before


@pytest.mark.skipif(not fsyncer.HAS_SYNCFS, reason="no syncfs(2) here")
def test_syncfs_of_a_closed_descriptor_is_an_error():
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    os.close(fd)
    with pytest.raises(OSError, match="Bad file descriptor"):
        fsyncer.syncfs(fd)


def test_wait_returns_once_the_batch_is_synced(tmp_path, monkeypatch):
    gate, entered = threading.Event(), threading.Event()
    threads = watch_fsync(monkeypatch, gate, entered)
    with open(tmp_path / "a.jsonl", "ab") as f:
        syncer = BackgroundFsync("test log")
        syncer.submit([f.fileno()])
        assert entered.wait(10)
        waited = threading.Event()
        waiter = threading.Thread(target=lambda: (syncer.wait(), waited.set()))
        waiter.start()
        assert not waited.wait(0.3)  # the fsync is held at the gate
        gate.set()
        assert waited.wait(10) and threads == ["fsync"]
        waiter.join()
    syncer.close()
