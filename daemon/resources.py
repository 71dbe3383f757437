"""Start-up check that the configured streams fit in this machine's memory.

Each setting has an upper bound (:data:`~instrumentd.daemon.config.LIMITS`); what they add up to
over all streams is checked here against ``MemAvailable`` before anything is allocated, so a
daemon that cannot hold its rings says so in one line instead of being killed later.
"""

from __future__ import annotations

from pathlib import Path

from instrumentd.pipeline.errors import EXIT_STARTUP, InstrumentdError

from .config import Config

SAMPLE_BYTES = 4  # float32 samples in the rings
RING_RATE = 44100  # hz, the rings' rate
STREAM_OVERHEAD = 32 * 2**20  # bytes per stream besides its ring: features, pitch state, segmenter
PROCESS_OVERHEAD = 600 * 2**20  # bytes: torch, the model, the interpreter
MESSAGE_BYTES = 1024  # about one window event


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
