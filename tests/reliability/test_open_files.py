"""A daemon with more sources than the soft open-file limit allows: it lifts the limit and serves them
all, or says in one line that the hard limit is too low (each stream holds its audio file, its log
file and, while the heartbeat's fsync runs, a duplicate of the log's descriptor)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile

from instrumentd.daemon.config import parse_source
from instrumentd.daemon.resources import FILES_BASE, needed_files, raise_open_file_limit

from ..conftest import instrumentd, one_line_error, read_log

SOURCES = 60  # file sources: 180 descriptors and more, against a soft limit of LOW_SOFT
LOW_SOFT = 128


def _limited(soft: int, hard: int | None = None):
    """preexec_fn: the child starts with these open-file limits (the hard one kept when None)."""
    def apply() -> None:
        _, old_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, old_hard if hard is None else hard))
    return apply


def _serve(tmp_path: Path, limits) -> subprocess.CompletedProcess:
    clip = tmp_path / "clip.wav"
    t = np.arange(int(3.2 * 44100)) / 44100
    soundfile.write(clip, (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 44100)
    args = ["serve", "--device", "cpu", "--log-dir", str(tmp_path / "log"), "--pub", "ipc://" + str(tmp_path / "pub"),
            "--replay", ""]
    for i in range(SOURCES):
        args += ["--source", f"s{i}=file+fast:{clip}"]
    return instrumentd(*args, timeout=600, preexec_fn=limits)


def test_needed_files_count_each_stream_its_log_and_its_source():
    specs = [parse_source("a=file:x.wav"), parse_source("b=ffmpeg:http://h/s"), parse_source("c=mic")]
    streams = (2 + 1) + (2 + 3) + (2 + 0)
    assert needed_files(specs) == FILES_BASE + streams + streams // 10


def test_the_soft_limit_is_raised_to_the_hard_one_when_the_streams_need_it():
    code = ("import resource; from instrumentd.daemon.config import parse_source; "
            "from instrumentd.daemon.resources import raise_open_file_limit; "
            f"print(raise_open_file_limit([parse_source(f'{{i}}=file:x.wav') for i in range({SOURCES})]), "
            "*resource.getrlimit(resource.RLIMIT_NOFILE))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         preexec_fn=_limited(256)).stdout.split()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert int(out[0]) == int(out[1]) == int(out[2]) == hard
    assert raise_open_file_limit([]) == resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # nothing to raise


def test_a_daemon_lifts_a_low_soft_limit_and_serves_every_source(tmp_path):
    done = _serve(tmp_path, _limited(LOW_SOFT))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Too many open files" not in done.stderr
    windows = [sum(e["type"] == "window" for e in read_log(tmp_path / "log", f"s{i}")) for i in range(SOURCES)]
    assert windows == [1] * SOURCES  # 3.2 s of audio: one window each


def test_a_hard_limit_too_low_for_the_sources_is_one_line(tmp_path):
    done = _serve(tmp_path, _limited(200, 200))
    assert done.returncode == 3
    one_line_error(done.stderr, "serve", f"{SOURCES} stream(s) need about", "open files", "200", "LimitNOFILE")
