"""Start-up checks that the configured streams fit in this machine's memory and open-file limit.

Each setting has an upper bound (:data:`~instrumentd.daemon.config.LIMITS`); what they add up to
over all streams is checked here against ``MemAvailable`` before anything is allocated, so a
daemon that cannot hold its rings says so in one line instead of being killed later.

Open files: each stream holds its event log file (and a duplicate of it while the heartbeat's
background fsync runs, where the log's filesystem cannot be synced in one syncfs), a ``file:``
source its audio file, an ``ffmpeg:`` source two pipes. A thousand sources need some 3,000
descriptors, where a login shell or a systemd service starts with a soft limit of 1,024: the daemon
raises its soft limit towards the hard one (as a service is meant to) and says in one line when even
the hard limit is too low, instead of failing with ``Too many open files`` at its first heartbeat.
"""

from __future__ import annotations

import resource
from pathlib import Path

from instrumentd.pipeline.errors import EXIT_STARTUP, InstrumentdError

from .config import Config, SourceSpec

SAMPLE_BYTES = 4  # float32 samples in the rings
RING_RATE = 44100  # hz, the rings' rate
# bytes per stream besides its ring: features, pitch state, levels, segmenter, its source's and log's
# buffers. Measured 1.2 MB on a CPU worker (120 streams, 2-core CPU) and 0.7-4.3 MB in `bench serve`'s
# rss_mb on an H100 (300 and 1,000 file: sources); 32 MiB, the old bound, refused 4,000 streams on a
# 128 GiB machine
STREAM_OVERHEAD = 6 * 2**20
PROCESS_OVERHEAD = 600 * 2**20  # bytes: torch, the model, the interpreter
MESSAGE_BYTES = 1024  # about one window event
FILES_BASE = 256  # descriptors a daemon holds whatever its streams: sockets, libraries, the GPU driver
FILES_PER_STREAM = 2  # its event log file, and a duplicate of it while a background fsync runs (without syncfs)
# the audio file; ffmpeg's stdout and stderr pipes, and its ring's shared memory (daemon/pipe_reader.py)
FILES_PER_SOURCE = {"file": 1, "file+fast": 1, "ffmpeg": 3}


class ResourceError(InstrumentdError):
    """The configuration needs more memory than this machine has free."""

    exit_code = EXIT_STARTUP


def available_bytes() -> int | None:
    """``MemAvailable`` from /proc/meminfo, None where there is none."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def needed_bytes(config: Config, streams: int) -> int:
    """Bytes that ``streams`` streams under ``config`` need at most: rings, per-stream state, the
    process, and one subscriber's full queue."""
    ring = int(config.ring_seconds * RING_RATE * SAMPLE_BYTES)
    return streams * (ring + STREAM_OVERHEAD) + PROCESS_OVERHEAD + config.sndhwm * MESSAGE_BYTES


def check_memory(config: Config, streams: int) -> None:
    """Raise ResourceError naming the settings when ``streams`` streams cannot fit in free memory."""
    free = available_bytes()
    need = needed_bytes(config, streams)
    if free is not None and need > free:
        raise ResourceError(
            f"{streams} stream(s) with ring_seconds = {config.ring_seconds:g} and sndhwm = {config.sndhwm} need about "
            f"{need / 2**30:.1f} GiB, and {free / 2**30:.1f} GiB is free: lower ring_seconds or sndhwm, or split the "
            f"sources over machines")


def needed_files(specs: list[SourceSpec]) -> int:
    """Descriptors a daemon with these sources holds at most (a 10 % margin included)."""
    streams = sum(FILES_PER_STREAM + FILES_PER_SOURCE.get(spec.kind, 0) for spec in specs)
    return FILES_BASE + streams + streams // 10


def raise_open_file_limit(specs: list[SourceSpec]) -> int:
    """Lift this process's soft open-file limit to what ``specs`` need (to the hard limit, which a
    process may do by itself); returns the soft limit now. Raise ResourceError naming the limit when
    the hard limit is too low."""
    need = needed_files(specs)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or need <= soft:
        return soft
    if hard != resource.RLIM_INFINITY and need > hard:
        raise ResourceError(
            f"{len(specs)} stream(s) need about {need} open files, and this process may open {hard} (the hard "
            f"limit): raise it (LimitNOFILE= in a systemd unit, nofile in /etc/security/limits.conf, ulimit -Hn), "
            f"or spread the sources over processes (serve --processes)")
    target = hard if hard != resource.RLIM_INFINITY else need
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        raise ResourceError(f"{len(specs)} stream(s) need about {need} open files, and the limit of {soft} "
                            f"could not be raised ({exc})") from None
    return target
