import json
import os
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


def watch_syncs(monkeypatch) -> list[tuple[str, str, int]]:
    """Record every real fsync and syncfs as (call, thread, inode of what it syncs)."""
    from instrumentd.daemon import fsyncer

    calls, real_fsync, real_syncfs = [], fsyncer.os.fsync, fsyncer.syncfs

    def watched(name, real):
        return lambda fd: (calls.append((name, threading.current_thread().name, os.fstat(fd).st_ino)), real(fd))

    monkeypatch.setattr(fsyncer.os, "fsync", watched("fsync", real_fsync))
    monkeypatch.setattr(fsyncer, "syncfs", watched("syncfs", real_syncfs))
    return calls


def test_sync_runs_off_the_writers_thread_and_close_waits_for_it(tmp_path, monkeypatch):
    from instrumentd.daemon.fsyncer import HAS_SYNCFS

    calls = watch_syncs(monkeypatch)
    log = EventLog(tmp_path, rotate_bytes=2000)
    for stream in ("a", "b"):
        log.open_stream(stream)
        log.append(win(stream, 0))
    files = sorted(p.stat().st_ino for p in tmp_path.glob("*/*.jsonl"))
    log.sync()
    for i in range(1, 10):  # the files rotate while the heartbeat's sync runs
        log.append(win("a", i))
    log.close()
    heartbeat = [c for c in calls if c[1] == "fsync"]
    if HAS_SYNCFS:  # the log folder's filesystem, once
        assert heartbeat == [("syncfs", "fsync", tmp_path.resolve().stat().st_ino)]
    else:  # the heartbeat's two files
        assert sorted(c[2] for c in heartbeat) == files and {c[0] for c in heartbeat} == {"fsync"}
    assert all(c[1] == threading.current_thread().name for c in calls if c not in heartbeat)  # rotation, close
    assert [e["seq"] for e in EventLog(tmp_path).read("a", 0)] == list(range(10))


MOUNTED_STREAM = """
import sys, threading
sys.path[:0] = {path!r}
from tests.daemon.test_eventlog import win, watch_syncs
from instrumentd.daemon.eventlog import EventLog
import pytest
mp = pytest.MonkeyPatch()
calls = watch_syncs(mp)
log = EventLog({folder!r})
for s in ("here", "mounted"):
    log.open_stream(s)
    log.append(win(s, 0))
log.sync()
log.close()
print(sorted((c[0], c[1]) for c in calls if c[1] == "fsync"))
"""


def test_a_stream_folder_on_another_filesystem_gets_its_files_fsynced(tmp_path):
    """The log folder's filesystem is synced in one call; a stream whose folder is a mount of its own
    (a tmpfs, in a user and mount namespace of the test's own) has its file fsynced besides."""
    import shutil
    import subprocess
    import sys

    from instrumentd.daemon.fsyncer import HAS_SYNCFS

    if not HAS_SYNCFS or shutil.which("unshare") is None:
        pytest.skip("needs syncfs(2) and unshare(1)")
    folder = tmp_path / "log"
    (folder / "mounted").mkdir(parents=True)
    namespace = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c"]
    probe = subprocess.run([*namespace, f'mount -t tmpfs none "{folder}/mounted"'], capture_output=True, text=True,
                           timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"no user and mount namespace for a tmpfs here: {probe.stderr.strip()}")
    script = MOUNTED_STREAM.format(path=sys.path, folder=str(folder))
    run = subprocess.run([*namespace, f'mount -t tmpfs none "{folder}/mounted" && exec "{sys.executable}" -c "$0"',
                          script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[('fsync', 'fsync'), ('syncfs', 'fsync')]"


@pytest.mark.parametrize("whole_filesystem", [True, False], ids=["syncfs", "fsync each"])
def test_a_sync_without_descriptors_to_spare_is_skipped_with_a_warning_and_leaks_none(tmp_path, caplog,
                                                                                     whole_filesystem):
    import resource

    from instrumentd.daemon import fsyncer

    if whole_filesystem and not fsyncer.HAS_SYNCFS:
        pytest.skip("no syncfs(2) here")
    before = len(os.listdir("/proc/self/fd"))
    log = EventLog(tmp_path, whole_filesystem=whole_filesystem)
    for i in range(20):
        log.open_stream(f"s{i}")
        log.append(win(f"s{i}", 0))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # fsyncs one by one: room for three duplicates (a new descriptor takes the lowest free number, which
    # must stay under the soft limit), not for twenty: the sync fails part way, as a daemon at its limit
    # would; one syncfs: room for none (it needs the folder's descriptor and one duplicate)
    taken = set(map(int, os.listdir("/proc/self/fd")))
    lowest_free = min(set(range(len(taken) + 1)) - taken)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free + (0 if whole_filesystem else 3), hard))
    try:
        log.sync()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert "sync of 20 files skipped (Too many open files)" in caplog.text
    log.append(win("s0", 1))  # the log goes on
    log.sync()
    log.close()
    assert len(os.listdir("/proc/self/fd")) == before  # the duplicates made before the failure were closed
    assert [e["seq"] for e in EventLog(tmp_path).read("s0", 0)] == [0, 1]
