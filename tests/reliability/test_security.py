"""Locked-down defaults: loopback endpoints, CurveZMQ or --insecure, no pickle, no shell, no escaping the log folder."""

from __future__ import annotations

import ast
import os
import pickle
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import zmq

from instrumentd.clients.cli import main
from instrumentd.clients.keys import make_keys
from instrumentd.daemon.config import load_config, parse_source
from instrumentd.daemon.eventlog import EventLog
from instrumentd.daemon.sources import FfmpegSource
from instrumentd.model.classes import CLASSES
from instrumentd.model.recognizer import DEFAULT_CHECKPOINT
from instrumentd.daemon import events
from instrumentd.pipeline.errors import ParameterError

from ..conftest import free_port, one_line_error

PACKAGES = ("pipeline", "model", "daemon", "clients", "training")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("flag", ["--pub", "--replay"])
def test_a_non_loopback_endpoint_is_refused_without_keys_or_insecure(flag, capsys, tmp_path):
    endpoint = f"tcp://0.0.0.0:{free_port()}"
    base = ["serve", "--source", "file:x.wav", flag, endpoint, "--print-config"]
    assert main(base) == 2
    one_line_error(capsys.readouterr().err, "serve", endpoint, "--insecure", "instrumentd keys")
    assert main([*base, "--insecure"]) == 0
    assert "insecure = true" in capsys.readouterr().out
    make_keys(tmp_path / "keys", ["client"])
    assert main([*base, "--curve-key", str(tmp_path / "keys" / "server.key_secret")]) == 0
    # the environment and the TOML file fill the same fields
    assert load_config(env={"INSTRUMENTD_PUB": endpoint, "INSTRUMENTD_INSECURE": "yes"}).insecure is True
    toml = tmp_path / "c.toml"
    toml.write_text(f'pub = "{endpoint}"\ninsecure = "maybe"\n')
    with pytest.raises(ParameterError, match="insecure = 'maybe' is not true or false"):
        load_config(toml, env={})


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_curve_daemon_on_loopback_serves_tail_with_keys_and_nobody_else(daemon, wav, tmp_path, processes):
    keys = tmp_path / "keys"
    make_keys(keys, ["client"])
    # with 2 processes the group's parent proxies its children's events to --pub and answers --replay
    sources = [f"s{i}=file:{wav(8.0)}" for i in range(processes)]
    d = daemon(sources, "--hop", "0.5", "--curve-key", str(keys / "server.key_secret"),
               "--curve-clients", str(keys / "clients"), "--processes", str(processes))
    plain = zmq.Context().socket(zmq.SUB)
    plain.setsockopt(zmq.SUBSCRIBE, b"")
    plain.setsockopt(zmq.LINGER, 0)
    plain.connect(d.pub)
    tail = subprocess.Popen([sys.executable, "-m", "instrumentd", "tail", "--connect", d.pub, "--replay", d.replay,
                             "--server-key", str(keys / "server.key"), "--client-key", str(keys / "client.key_secret")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = tail.stdout.readline()  # blocks until tail prints its first event
        first = events.decode(line)
        # a keyed client hears the daemon's streams (from whichever event it joined at)
        assert first["stream"] in {"s0", "s1"} and first["seq"] >= 0, d.log_text()
        assert not plain.poll(1000)  # the daemon was publishing all along; a keyless client got nothing
        assert "(CurveZMQ)" in d.log_text()
    finally:
        tail.terminate()
        tail.wait(10)
        plain.close()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f"{getattr(f.value, 'id', '')}.{f.attr}" if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            yield name, node


def test_no_code_can_unpickle():
    """pickle.load(s) and torch.load without weights_only=True execute code from a file: none anywhere."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name, call in _calls(ast.parse(path.read_text())):
                where = f"{path.relative_to(ROOT)}:{call.lineno}"
                if name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "joblib.load"):
                    found.append(f"{where} {name}")
                if name == "torch.load":
                    safe = [k for k in call.keywords if k.arg == "weights_only"
                            and isinstance(k.value, ast.Constant) and k.value.value is True]
                    if not safe:
                        found.append(f"{where} torch.load without weights_only=True")
    assert found == []


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


@pytest.mark.parametrize("command", ["classify", "serve"])
def test_a_pickle_checkpoint_is_refused_without_running_it(command, tmp_path, capsys, wav):
    _Payload.marker = tmp_path / "pwned"
    evil = tmp_path / "model.safetensors"
    evil.write_bytes(pickle.dumps({"weights": _Payload()}))
    plain = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(3)}, plain)
    clip = wav(3.2)
    for path in (evil, plain):
        extra = ["--source", f"file:{clip}", "--log-dir", "", "--replay", ""] if command == "serve" else [str(clip)]
        assert main([command, *extra, "--checkpoint", str(path), "--device", "cpu"]) == 2
        one_line_error(capsys.readouterr().err, command, str(path), "safetensors")
    assert not _Payload.marker.exists()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_urls_are_arguments_never_shell(tmp_path, caplog):
    marker = tmp_path / "pwned"
    url = f"{tmp_path}/x.wav;rm -rf {tmp_path}/keep; touch {marker} $(touch {marker}) `touch {marker}` | tee {marker}"
    keep = tmp_path / "keep"
    keep.mkdir()
    source = FfmpegSource(parse_source(f"evil=ffmpeg:{url}"), 10.0)
    assert source.command()[source.command().index("-i") + 1] == url  # one argument, as given
    source.start()
    deadline = time.monotonic() + 20
    while source.restarts < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    source.stop()
    assert source.restarts >= 1  # ffmpeg ran, found no such file, and exited
    said = [r.getMessage() for r in caplog.records if "ffmpeg exited" in r.getMessage()]
    assert said and "No such file or directory" in said[0]
    if "Error opening input files" not in said[0]:  # ffmpeg 7's last line names no file; 5.1's quotes the URL
        assert f"x.wav;rm -rf {tmp_path}/keep; touch" in said[0]  # whole: one argument
    assert keep.is_dir() and not marker.exists()


def test_stream_names_cannot_leave_the_log_folder(tmp_path):
    for text in ("../x=file:a.wav", "a/b=file:a.wav", "..=mic", ".x=mic", "x y=mic", "é=mic", "-x=mic"):
        with pytest.raises(ParameterError, match="stream name"):
            parse_source(text)
    assert parse_source("file:../../etc/pass wd.wav").name == "pass-wd"  # a default name is sanitised
    log = EventLog(tmp_path / "events")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, tmp_path / "events" / "linked")
    for name in ("..", "../x", "/etc", "linked", "a\x00b", "x" * 65):
        with pytest.raises(ParameterError, match="stream name"):
            log.open_stream(name)
    assert list(outside.iterdir()) == []
    assert re.fullmatch(r".*/events/ok", str(log.stream_dir("ok")))


# -- CurveZMQ you can operate ------------------------------------------------------------------------


@pytest.mark.parametrize("private, umask, folder_mode, file_mode", [
    (True, 0o000, 0o700, 0o600), (False, 0o022, None, 0o644), (False, 0o077, None, 0o600)])
def test_log_files_are_private_with_curvezmq_and_follow_the_umask_otherwise(tmp_path, private, umask, folder_mode,
                                                                            file_mode):
    old = os.umask(umask)
    try:
        log = EventLog(tmp_path / "events", private=private)
        log.open_stream("a")
        log.append(events.window_event("a", 0, 0, 3, 1.7e9, [1 / 11] * 11, CLASSES, [], 1.0, "m", False))
        log.close()
    finally:
        os.umask(old)
    path = next((tmp_path / "events" / "a").glob("*.jsonl"))
    assert stat.S_IMODE(path.stat().st_mode) == file_mode
    if folder_mode is not None:
        assert stat.S_IMODE((tmp_path / "events").stat().st_mode) == folder_mode
        assert stat.S_IMODE((tmp_path / "events" / "a").stat().st_mode) == folder_mode


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_checkpoints_and_bundles_follow_the_umask(tmp_path, umask, mode):
    from instrumentd.model import checkpoint
    from instrumentd.model.networks import build
    from instrumentd.pipeline.config import FeatureConfig
    from instrumentd.training.dataset import FeatureSet, write

    old = os.umask(umask)
    try:
        checkpoint.save(tmp_path / "c.safetensors", build("cross", 11), "cross", FeatureConfig())
        features = FeatureSet(mel=torch.zeros(2, 1, 128, 100), band=torch.zeros(2, 100, dtype=torch.long),
                              clip=torch.arange(2), labels=torch.zeros(2, len(CLASSES), dtype=torch.long),
                              names=["x", "y"], soundfonts=["a", "a"], meta={})
        write(features, tmp_path / "b.safetensors")
    finally:
        os.umask(old)
    for name in ("c.safetensors", "b.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_a_checkpoint_another_user_cannot_read_says_permission_denied(tmp_path):
    folder = Path(tempfile.mkdtemp(prefix="instrumentd-perm-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        path = folder / "private.safetensors"
        shutil.copy(DEFAULT_CHECKPOINT, path)
        path.chmod(0o600)
        script = ("from instrumentd.model.checkpoint import read_metadata, CheckpointError\n"
                  f"try:\n    read_metadata({str(path)!r})\nexcept CheckpointError as e:\n    print(e)\n")
        run = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                              script], capture_output=True, text=True, env={"PYTHONPATH": os.environ.get("PYTHONPATH", ""),
                                                                            "HOME": "/nonexistent"})
        if run.returncode != 0 and "Permission denied" in run.stderr and "python" in run.stderr:
            pytest.skip("the interpreter is not reachable by nobody here")
        assert run.stdout.strip() == f"{path}: cannot read (permission denied)", run.stderr
    finally:
        shutil.rmtree(folder)
