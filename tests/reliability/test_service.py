"""serve as a service: READY, WATCHDOG and STOPPING from a running daemon, one daemon per log folder,
exit codes, and a run as ``nobody`` with no home, a read-only install and a numba cache to find."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ..conftest import free_port, one_line_error, read_log
from .conftest import windows_of

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.mark.slow
def test_ready_watchdog_and_stopping_reach_a_real_notify_socket(daemon, wav, notify_socket, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.2 s
    d = daemon([f"a=file:{wav(30.0)}"], "--hop", "0.5")
    assert "STATUS=serving 1 stream(s)" in notify_socket.wait_for("READY=1")[-1]
    for _ in range(3):  # pings keep coming from the loop
        notify_socket.wait_for("WATCHDOG=1", 5)
    d.proc.send_signal(signal.SIGTERM)
    notify_socket.wait_for("STOPPING=1", 30)
    assert d.wait(60) == 0, d.log_text()


@pytest.mark.slow
def test_a_second_daemon_on_the_same_log_folder_refuses_naming_the_holder(tmp_path, daemon, wav, notify_socket):
    """The first is a group of two processes: its children write under the parent's lock."""
    group = daemon([f"a=file:{wav(30.0)}", f"b=file:{wav(30.0, name='b.wav')}"], "--hop", "0.5",
                   "--processes", "2")
    notify_socket.wait_for("READY=1")
    second = subprocess.run([sys.executable, "-m", "instrumentd", "serve", "--source", f"c=file:{wav(5.0)}",
                             "--log-dir", str(group.log_dir), "--pub", f"tcp://127.0.0.1:{free_port()}",
                             "--replay", f"tcp://127.0.0.1:{free_port()}", "--device", "cpu"],
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 3
    one_line_error(second.stderr, "serve", str(group.log_dir.resolve()), f"pid {group.proc.pid}", "in use")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not all(windows_of(read_log(group.log_dir, s)) for s in "ab"):
        time.sleep(0.5)
    assert all(windows_of(read_log(group.log_dir, s)) for s in "ab"), group.log_text()
    assert not (group.log_dir / "c").exists()
    group.proc.send_signal(signal.SIGTERM)
    assert group.wait(90) == 0, group.log_text()


def test_exit_codes_2_for_usage_3_for_start_up(tmp_path, wav, capsys):
    from instrumentd.clients.cli import main

    assert main(["serve", "--source", "file:x.wav", "--hop", "99"]) == 2
    one_line_error(capsys.readouterr().err, "serve", "hop")
    pub = f"tcp://127.0.0.1:{free_port()}"
    taken = socket.socket()
    taken.bind(("127.0.0.1", int(pub.rsplit(":", 1)[1])))
    taken.listen()
    try:
        assert main(["serve", "--source", f"file:{wav(1.0)}", "--pub", pub, "--replay", "", "--log-dir",
                     str(tmp_path / "ev"), "--device", "cpu"]) == 3
    finally:
        taken.close()
    one_line_error(capsys.readouterr().err, "serve", pub, "cannot bind")


@pytest.mark.slow
def test_exit_code_1_when_the_log_fails_while_serving(daemon, wav, monkeypatch):
    monkeypatch.setenv("INSTRUMENTD_LOG_ROTATE_MB", "0.0001")  # 105 bytes: a new file for every event
    d = daemon([f"a=file:{wav(60.0)}"], "--hop", "0.5")
    folder = d.log_dir / "a"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(list(folder.glob("*.jsonl"))) < 2:
        time.sleep(0.2)
    shutil.rmtree(folder)
    folder.write_text("not a folder")  # the next rotation cannot open a file there
    assert d.wait(60) == 1, d.log_text()
    errors = [ln for ln in d.log_text().splitlines() if " ERROR " in ln]
    assert len(errors) == 1 and "stopping: stream a: cannot open the event log" in errors[0], errors
    assert "Traceback" not in d.log_text()


def _nobody_can_run_python() -> bool:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return False
    probe = subprocess.run([*NOBODY, sys.executable, "-c", "import instrumentd"], capture_output=True,
                           env={"PYTHONPATH": os.environ.get("PYTHONPATH", ""), "HOME": "/nonexistent"})
    return probe.returncode == 0


as_nobody = pytest.mark.skipif(not _nobody_can_run_python(),
                               reason="needs root, setpriv and an interpreter that user nobody can run")


def _nobody_env() -> dict[str, str]:
    return {"HOME": "/nonexistent", "PATH": "/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "INSTRUMENTD_HEARTBEAT": "0.5"}


@pytest.fixture
def public_folder():
    """A folder every user can read, with a ``log`` folder that belongs to nobody."""
    folder = Path(tempfile.mkdtemp(prefix="instrumentd-nobody-", dir="/tmp"))
    folder.chmod(0o755)
    (folder / "log").mkdir()
    shutil.chown(folder / "log", "nobody", "nogroup")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@as_nobody
def test_an_unwritable_log_folder_is_one_line_saying_permission_denied(public_folder, wav):
    (public_folder / "root-only").mkdir(mode=0o755)
    clip = shutil.copy(wav(1.0), public_folder / "clip.wav")
    run = subprocess.run([*NOBODY, sys.executable, "-m", "instrumentd", "serve", "--source", f"file:{clip}",
                          "--log-dir", str(public_folder / "root-only" / "events"), "--device", "cpu",
                          "--pub", f"tcp://127.0.0.1:{free_port()}", "--replay", ""],
                         capture_output=True, text=True, env=_nobody_env(), timeout=120)
    assert run.returncode == 3, run.stderr
    one_line_error(run.stderr, "serve", "root-only", "permission denied")


@as_nobody
@pytest.mark.slow
def test_serve_runs_as_nobody_with_no_home_and_a_read_only_install(public_folder, wav, subscriber):
    import instrumentd

    install = Path(instrumentd.__file__).resolve().parent
    writable = subprocess.run([*NOBODY, "test", "-w", str(install)], env=_nobody_env())
    assert writable.returncode != 0, "the install must not be writable by nobody"
    clip = shutil.copy(wav(20.0), public_folder / "clip.wav")
    pub = f"tcp://127.0.0.1:{free_port()}"
    # a paced file (the file player) and, where ffmpeg is installed, ffmpeg decoding a file (the pipe
    # reader): both helper processes start as the daemon's user
    names = {"a"} | ({"b"} if shutil.which("ffmpeg") else set())
    sources = ["--source", f"a=file:{clip}"] + (["--source", f"b=ffmpeg:{clip}"] if "b" in names else [])
    proc = subprocess.Popen([*NOBODY, sys.executable, "-m", "instrumentd", "serve", *sources,
                             "--log-dir", str(public_folder / "log" / "events"), "--device", "cpu", "--pub", pub,
                             "--replay", f"tcp://127.0.0.1:{free_port()}", "--hop", "0.5"],
                            stderr=subprocess.PIPE, env=_nobody_env(), text=True)
    try:
        sub = subscriber(pub)
        got = sub.events(lambda got: proc.poll() is not None or {w["stream"] for w in windows_of(got)} == names,
                         timeout=120)
        assert proc.poll() is None, proc.stderr.read()
        assert {w["stream"] for w in windows_of(got)} == names
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        err = proc.stderr.read()
        assert "Traceback" not in err and "cannot cache" not in err
        logged = read_log(public_folder / "log" / "events", "a")
        assert logged and (public_folder / "log" / "events" / "a").stat().st_uid == 65534
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
