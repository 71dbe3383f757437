import json
import threading

import numpy as np
import pytest

from instrumentd.daemon import events
from instrumentd.daemon.eventlog import EventLog
from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.errors import ParameterError


def win(stream: str, seq: int) -> dict:
    return events.window_event(stream, seq, seq, seq + 3.0, 1.7e9 + seq, np.full(11, 1 / 11), CLASSES, [],
                               5.0, "m", False)


def test_a_file_reopened_half_full_rotates_at_the_same_size(tmp_path):
    """Each full file ends with the line that took it past ``rotate_bytes``, whether or not the daemon
    restarted in between (the size is counted from the file's length at reopening)."""
    log = EventLog(tmp_path, rotate_bytes=2000)
    log.open_stream("a")
    for i in range(7):
        log.append(win("a", i))
    log.close()
    log = EventLog(tmp_path, rotate_bytes=2000)
    assert log.open_stream("a") == 7
    for i in range(7, 20):
        log.append(win("a", i))
    log.close()
    files = sorted((tmp_path / "a").glob("*.jsonl"))
    assert len(files) >= 4
    for f in files[:-1]:
        last = f.read_bytes().splitlines(keepends=True)[-1]
        assert f.stat().st_size - len(last) < 2000 <= f.stat().st_size


def test_seq_continues_across_reopen_and_rotation(tmp_path):
    log = EventLog(tmp_path, rotate_bytes=2000)
    assert log.open_stream("a") == 0
    for i in range(10):
        log.append(win("a", i))
    log.close()
    assert len(list((tmp_path / "a").glob("*.jsonl"))) > 1  # rotated
    log = EventLog(tmp_path, rotate_bytes=2000)
    assert log.open_stream("a") == 10
    log.append(win("a", 10))
    log.append(win("a", 11))
    files = sorted((tmp_path / "a").glob("*.jsonl"))
    for f in files[:-1]:  # each full file ends with the line that took it to the limit
        lines = f.read_bytes().splitlines(keepends=True)
        assert f.stat().st_size - len(lines[-1]) < 2000 <= f.stat().st_size
    assert files[-1].stat().st_size < 2000 + len(files[-1].read_bytes().splitlines(keepends=True)[-1])
    assert [e["seq"] for e in log.read("a", 0)] == list(range(12))
    assert [e["seq"] for e in log.read("a", 7, limit=2)] == [7, 8]
    assert log.streams() == {"a": 11}
    with pytest.raises(Exception, match="seq 13 appended, expected 12"):
        log.append(win("a", 13))


def test_a_torn_last_line_is_cut_and_seq_resumes_after_the_last_whole_event(tmp_path):
    log = EventLog(tmp_path)
    log.open_stream("b")
    for i in range(3):
        log.append(win("b", i))
    log.close()
    path = next((tmp_path / "b").glob("*.jsonl"))
    with open(path, "ab") as f:
        f.write(json.dumps(win("b", 3)).encode()[:40])  # killed mid-write
    log = EventLog(tmp_path)
    assert log.open_stream("b") == 3
    log.append(win("b", 3))
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [0, 1, 2, 3]


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "/etc", ".hidden", "", "x" * 65])
def test_stream_names_cannot_leave_the_folder(tmp_path, name):
    log = EventLog(tmp_path / "log")
    with pytest.raises(ParameterError):
        log.open_stream(name)
    with pytest.raises(ParameterError):
        log.read(name, 0)
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == [tmp_path / "log"]


def test_sync_runs_off_the_writers_thread_and_close_waits_for_it(tmp_path, monkeypatch):
    from instrumentd.daemon import fsyncer

    threads, real = [], fsyncer.os.fsync
    monkeypatch.setattr(fsyncer.os, "fsync", lambda fd: (threads.append(threading.current_thread().name), real(fd)))
    log = EventLog(tmp_path, rotate_bytes=2000)
    for stream in ("a", "b"):
        log.open_stream(stream)
        log.append(win(stream, 0))
    log.sync()
    for i in range(1, 10):  # the files rotate while their duplicates are synced
        log.append(win("a", i))
    log.close()
    assert threads.count("fsync") == 2  # the heartbeat's two files; rotation and close fsync in the writer's thread
    assert [e["seq"] for e in EventLog(tmp_path).read("a", 0)] == list(range(10))


def test_a_sync_without_descriptors_to_spare_is_skipped_with_a_warning_and_leaks_none(tmp_path, caplog):
    import os
    import resource

    log = EventLog(tmp_path)
    for i in range(20):
        log.open_stream(f"s{i}")
        log.append(win(f"s{i}", 0))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = len(os.listdir("/proc/self/fd"))
    # room for three duplicates (a new descriptor takes the lowest free number, which must stay under the
    # soft limit), not for twenty: the sync fails part way, as a daemon at its limit would
    taken = set(map(int, os.listdir("/proc/self/fd")))
    lowest_free = min(set(range(len(taken) + 1)) - taken)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free + 3, hard))
    try:
        log.sync()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert "fsync of 20 files skipped (Too many open files)" in caplog.text
    assert len(os.listdir("/proc/self/fd")) == before  # the duplicates made before the failure are closed
    log.append(win("s0", 1))  # the log goes on
    log.sync()
    log.close()
    assert [e["seq"] for e in EventLog(tmp_path).read("s0", 0)] == [0, 1]
