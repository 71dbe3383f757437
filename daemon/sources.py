"""Audio sources: each writes mono ``float32`` samples at its own rate into its stream's ring buffer.

| spec | class | pacing |
|---|---|---|
| ``mic[:DEVICE]`` | :class:`MicSource` | live: a PortAudio child; reopened with backoff when the device fails |
| ``file:PATH`` | :class:`FileSource` | live: paced by the wall clock, as if it were being played |
| ``file+fast:PATH`` | :class:`FileSource` | as fast as the worker reads (the ring makes it wait) |
| ``stdin:FORMAT:RATE:CHANNELS`` | :class:`StdinSource` | as written; the ring makes the writer wait when full |
| ``ffmpeg:URL`` | :class:`FfmpegSource` | as ffmpeg decodes; the child is restarted with backoff when it exits |

A live ring drops its oldest audio when the worker falls behind (counted); the others apply
backpressure. Resampling to 44.1 kHz happens on the reader's side (the worker), never in a callback.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from typing import Callable

import numpy as np
import soundfile

from instrumentd.pipeline.audio import sanitize
from instrumentd.pipeline.errors import InstrumentdError

from .config import SourceSpec
from .ringbuffer import RingBuffer

log = logging.getLogger("instrumentd.daemon.sources")

FFMPEG_RATE = 44100  # hz, what the ffmpeg child is asked to output
BACKOFF_FIRST = 0.5  # seconds before the first restart of a dead ffmpeg child
BACKOFF_MAX = 30.0  # seconds, the longest wait between restarts
BACKOFF_RESET = 30.0  # seconds of healthy running after which the backoff starts over
MIC_STALL = 2.0  # seconds without audio from a running input device before it is reopened
MIC_POLL = 0.1  # seconds between checks that the capture child's stream is still active
CHILD_FIRST_AUDIO = 10.0  # seconds a watched child may take to start up before its first sample
MIC_QUERY_TIMEOUT = 30.0  # seconds allowed to look up an input device
BLOCKING_RING_SECONDS = 5.0  # ring size for backpressured sources: a window, a hop and the pitch lag


class SourceError(InstrumentdError):
    """A source that cannot be opened: missing file, no such audio device, no ffmpeg."""


class Source:
    """Base: owns a ring buffer; ``start()`` begins filling it, ``stop()`` ends and closes it.

    ``state`` is one of ``starting``, ``running``, ``restarting``, ``ended``, ``failed``.
    """

    live = False

    def __init__(self, spec: SourceSpec, rate: int, ring_seconds: float):
        self.spec = spec
        self.name = spec.name
        self.rate = rate
        seconds = ring_seconds if self.live else BLOCKING_RING_SECONDS
        self.ring = RingBuffer(int(seconds * rate), rate, blocking=not self.live)
        self.state = "starting"
        self.restarts = 0
        self.xruns = 0  # PortAudio input overflows reported to the callback
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_guarded, name=f"source-{self.name}", daemon=True)
        self._thread.start()

    def _run_guarded(self) -> None:
        try:
            self.state = "running"
            self._run()
            if self.state == "running":
                self.state = "ended"
        except (OSError, soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
            self.state = "failed"
            log.error("source %s failed: %s", self.name, exc)
        finally:
            self.ring.close()

    def _run(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop producing audio; what is already in the ring stays readable."""
        self._stop.set()
        self.ring.close()
        if self._thread is not None:
            self._thread.join(timeout=1)

    @property
    def ended(self) -> bool:
        """True once no more audio will come and the ring is empty."""
        return self.ring.closed and self.ring.available() == 0


class FileSource(Source):
    """A file soundfile can read, mixed to mono; ``realtime`` paces it by the wall clock."""

    def __init__(self, spec: SourceSpec, ring_seconds: float, realtime: bool):
        self.live = realtime
        path = spec.target
        if os.path.exists(path) and not os.path.isfile(path):  # a FIFO or device would block start-up
            raise SourceError(f"source {spec.name}: {path!r} is not a regular file (for a pipe use stdin: or ffmpeg:)")
        try:
            info = soundfile.info(os.fsencode(path))  # bytes: a name that is not UTF-8 opens as it is
        except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
            raise SourceError(f"source {spec.name}: cannot open {path!r} ({exc})") from None
        super().__init__(spec, int(info.samplerate), ring_seconds)
        self.path = os.fsencode(path)
        self.block = max(1, self.rate // (50 if realtime else 2))  # 20 ms paced, 0.5 s fast

    def _run(self) -> None:
        with soundfile.SoundFile(self.path) as f:
            t0 = time.monotonic()
            done = 0
            while not self._stop.is_set():
                block = f.read(self.block, dtype="float32", always_2d=True)
                if len(block) == 0:
                    return
                if self.live:
                    delay = t0 + (done + len(block)) / self.rate - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                self.ring.write(_mono(block))
                done += len(block)


class PcmReader:
    """Raw interleaved PCM bytes -> mono ``float32`` in [-1, 1], whatever the chunking.

    ``push(data)`` returns the samples of every whole frame received so far and keeps the bytes of
    an incomplete frame for the next push, so any split of a byte string gives the same samples.
    ``dtype`` is a numpy dtype (``<i2``...), ``channels`` the interleaved channel count.
    """

    def __init__(self, dtype: str, channels: int):
        self.dtype = np.dtype(dtype)
        self.channels = channels
        self.frame_bytes = self.dtype.itemsize * channels
        self._pending = b""

    def push(self, data: bytes) -> np.ndarray:
        """``data``: any number of bytes -> ``float32 [frames]``, one sample per whole frame."""
        pending = self._pending + data
        usable = len(pending) - len(pending) % self.frame_bytes
        self._pending = pending[usable:]
        raw = np.frombuffer(pending[:usable], dtype=self.dtype).reshape(-1, self.channels)
        return _mono(pcm_to_float(raw))

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back (dropped if the input ends here)."""
        return len(self._pending)


class StdinSource(Source):
    """Raw interleaved PCM on standard input: ``pcm = (numpy dtype, rate hz, channels)``."""

    def __init__(self, spec: SourceSpec, ring_seconds: float, stream=None):
        dtype, rate, channels = spec.pcm
        super().__init__(spec, rate, ring_seconds)
        self.reader = PcmReader(dtype, channels)
        if stream is None and sys.stdin is None:
            raise SourceError(f"source {spec.name}: stdin is closed (start serve with audio piped in)")
        self.fd = (stream or sys.stdin.buffer).fileno()

    def _run(self) -> None:
        want = self.reader.frame_bytes * max(1, self.rate // 50)
        while not self._stop.is_set():
            data = os.read(self.fd, want)
            if not data:
                if self.reader.pending:
                    log.warning("source %s: input ended mid-frame; the last %d byte(s) of a %d-byte frame dropped",
                                self.name, self.reader.pending, self.reader.frame_bytes)
                return
            samples = self.reader.push(data)
            if len(samples):
                self.ring.write(samples)


class _ChildSource(Source):
    """A child process that writes mono little-endian ``float32`` samples at ``rate`` hz to its stdout.

    The child is started from an argument list (no shell) and restarted with backoff (``BACKOFF_FIRST``
    doubling to ``BACKOFF_MAX``, starting over after ``BACKOFF_RESET`` s of healthy running) whenever it
    exits, or, when ``stall_s`` is set, when it writes nothing for ``stall_s`` seconds. Each restart counts
    in ``restarts`` and marks a break in the ring: the stream's features start over. The child's stderr is
    kept and its last line logged when it exits.
    """

    what = "child"  # names the child in log lines
    stall_s: float | None = None  # seconds without a sample after which a running child is killed
    first_s = CHILD_FIRST_AUDIO  # seconds a new child may take to start before the first sample

    def __init__(self, spec: SourceSpec, rate: int, ring_seconds: float):
        super().__init__(spec, rate, ring_seconds)
        self._child: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.backoff = BACKOFF_FIRST

    def command(self) -> list[str]:
        raise NotImplementedError

    def _stderr_line(self, line: bytes, errors: list[bytes]) -> None:
        errors.append(line)

    def _drain(self, child: subprocess.Popen, errors: list[bytes]) -> None:
        for line in child.stderr:
            self._stderr_line(line, errors)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            got = self._run_child()
            if self._stop.is_set():
                return
            if time.monotonic() - started > BACKOFF_RESET:
                self.backoff = BACKOFF_FIRST
            self.state = "restarting"
            self.restarts += 1
            log.warning("source %s: %s exited (%s); restarting in %.1f s", self.name, self.what, got, self.backoff)
            if self._stop.wait(self.backoff):
                return
            self.backoff = min(BACKOFF_MAX, self.backoff * 2)
            self.ring.mark_break()

    def _run_child(self) -> str:
        with self._lock:
            if self._stop.is_set():
                return "stopped"
            self._child = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE)
        child = self._child
        errors: list[bytes] = []
        drain = threading.Thread(target=self._drain, args=(child, errors), daemon=True)
        drain.start()
        pending = b""
        stalled = False
        wait = self.first_s
        fd = child.stdout.fileno()
        while True:
            if self.stall_s is not None and not select.select([fd], [], [], wait)[0]:
                stalled = True
                child.kill()
                break
            wait = self.stall_s
            data = os.read(fd, 4 * 4096)
            if not data:
                break
            self.state = "running"  # after a restart, only once audio flows again
            pending += data
            usable = len(pending) - len(pending) % 4
            if usable:
                self.ring.write(_mono(np.frombuffer(pending[:usable], dtype="<f4").reshape(-1, 1)))
                pending = pending[usable:]
        code = child.wait()
        drain.join(timeout=1)
        child.stdout.close()
        child.stderr.close()
        if stalled:
            return f"no audio for {wait:g} s"
        last = errors[-1].decode(errors="replace").strip() if errors else ""
        return f"code {code}" + (f": {last}" if last else "")

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._child is not None and self._child.poll() is None:
                self._child.terminate()
        super().stop()
        if self._child is not None and self._child.poll() is None:
            self._child.kill()


class FfmpegSource(_ChildSource):
    """``ffmpeg -i URL`` decoded to 44.1 kHz mono float32 on a pipe; restarted with backoff when it exits."""

    what = "ffmpeg"

    def __init__(self, spec: SourceSpec, ring_seconds: float, ffmpeg: str | None = None):
        super().__init__(spec, FFMPEG_RATE, ring_seconds)
        self.ffmpeg = ffmpeg or shutil.which("ffmpeg")
        if not self.ffmpeg:
            raise SourceError(f"source {spec.name}: ffmpeg is not installed (needed for {spec.spec!r})")
        self.url = spec.target

    def command(self) -> list[str]:
        return [self.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", self.url,
                "-vn", "-ac", "1", "-ar", str(FFMPEG_RATE), "-f", "f32le", "pipe:1"]


class MicSource(_ChildSource):
    """An input device through PortAudio (sounddevice): ``target`` = device index, name or empty (the default).

    PortAudio runs in a child process (``python -m instrumentd.daemon.sources capture``) whose callback only
    writes the block to its stdout. A device that fails or disappears (a PortAudio error, the stream going
    inactive, a JACK server that dies) ends the child, and one that stops delivering for ``MIC_STALL`` s
    while claiming to run is killed; either way the same device is reopened with the backoff of
    :class:`_ChildSource` and ``state`` reads ``restarting`` meanwhile. The child, not the daemon, holds
    PortAudio because closing a stream on a vanished device can block for minutes (JACK) and PortAudio only
    sees a device that came back after it is initialized again: a fresh process does both.
    """

    live = True
    what = "input device"
    stall_s = MIC_STALL

    def __init__(self, spec: SourceSpec, ring_seconds: float):
        probe = subprocess.run([sys.executable, "-m", __name__, "query", spec.target], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=MIC_QUERY_TIMEOUT)
        if probe.returncode != 0:
            reason = (probe.stderr.strip().splitlines() or [f"code {probe.returncode}"])[-1]
            raise SourceError(f"source {spec.name}: {reason}")
        info = json.loads(probe.stdout)
        super().__init__(spec, int(info["rate"]), ring_seconds)
        self.device_name = info["name"]

    def command(self) -> list[str]:
        return [sys.executable, "-m", __name__, "capture", self.spec.target, str(self.rate)]

    def _stderr_line(self, line: bytes, errors: list[bytes]) -> None:
        if line == _OVERFLOW:
            self.xruns += 1
        else:
            errors.append(line)


_OVERFLOW = b"input overflow\n"  # what the capture child writes to stderr for each PortAudio input overflow


def _device(target: str) -> int | str | None:
    """A ``mic:`` target -> sounddevice's device argument: an index, a name, or None for the default."""
    if not target:
        return None
    return int(target) if target.isdigit() else target


def _query(target: str) -> int:
    """Child: print ``{"name", "rate"}`` of input device ``target`` as JSON; exit 2 with a one-line reason if none."""
    try:
        import sounddevice
    except OSError as exc:  # the Python package is there, the PortAudio library is not
        print(f"cannot use audio input devices ({exc}); install PortAudio (libportaudio2)", file=sys.stderr)
        return 2
    try:
        info = sounddevice.query_devices(_device(target), kind="input")
    except (ValueError, sounddevice.PortAudioError) as exc:
        print(f"no input device {target or '(default)'!r} ({exc}); `python -m sounddevice` lists the devices",
              file=sys.stderr)
        return 2
    print(json.dumps({"name": info["name"], "rate": int(info["default_samplerate"])}))
    return 0


def _capture(target: str, rate: int) -> None:
    """Child: write device ``target``'s mono float32 samples at ``rate`` hz to stdout until the stream ends.

    Never returns: it leaves through ``os._exit`` so that neither closing the stream nor terminating
    PortAudio (both can block on a vanished device) delays the restart.
    """
    import sounddevice

    out = sys.stdout.buffer.fileno()
    finished = threading.Event()

    def callback(indata, frames, time_info, status) -> None:
        if status.input_overflow:
            os.write(2, _OVERFLOW)
        os.write(out, indata)

    try:
        stream = sounddevice.InputStream(device=_device(target), channels=1, samplerate=rate, dtype="float32",
                                         callback=callback, finished_callback=finished.set)
        stream.start()
    except (ValueError, sounddevice.PortAudioError) as exc:
        os.write(2, f"cannot open input device {target or '(default)'!r} ({exc})\n".encode())
        os._exit(1)
    try:
        while not finished.wait(MIC_POLL) and stream.active:
            pass
        reason = "the input stream stopped (device gone?)"
    except sounddevice.PortAudioError as exc:
        reason = f"PortAudio error ({exc})"
    os.write(2, f"{reason}\n".encode())
    os._exit(1)


def pcm_to_float(raw: np.ndarray) -> np.ndarray:
    """Integer or float PCM ``[frames, channels]`` -> float32 in [-1, 1]; float NaN and infinities become 0,
    other values beyond full scale are clipped before the cast (a float64 past float32's range is not infinite)."""
    if raw.dtype == np.uint8:
        return (raw.astype(np.float32) - 128.0) / 128.0
    if raw.dtype.kind == "i":
        return raw.astype(np.float32) / float(2 ** (8 * raw.dtype.itemsize - 1))
    return sanitize(raw.astype(np.float64)).astype(np.float32)


def _mono(block: np.ndarray) -> np.ndarray:
    """``[frames, channels]`` -> ``float32 [frames]`` in [-1, 1]: NaN and infinities become 0, the rest is
    clipped, so no source can feed the features a value whose square overflows."""
    block = sanitize(np.asarray(block, dtype=np.float32))
    mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)
    return np.ascontiguousarray(mono, dtype=np.float32)


SOURCES: dict[str, Callable[[SourceSpec, float], Source]] = {
    "mic": MicSource,
    "file": lambda spec, ring: FileSource(spec, ring, realtime=True),
    "file+fast": lambda spec, ring: FileSource(spec, ring, realtime=False),
    "stdin": StdinSource,
    "ffmpeg": FfmpegSource,
}


def open_source(spec: SourceSpec, ring_seconds: float) -> Source:
    """The source for ``spec``, opened (file checked, device found) but not started."""
    return SOURCES[spec.kind](spec, ring_seconds)


class FailedSource(Source):
    """A stream whose source could not be opened: it stays ``failed``, ends at once and holds no audio,
    so the daemon's other streams run and its status names the failure."""

    def __init__(self, spec: SourceSpec, reason: str):
        super().__init__(spec, FFMPEG_RATE, BLOCKING_RING_SECONDS)
        self.reason = reason
        self.state = "failed"
        self.ring.close()

    def start(self) -> None:
        return None


def open_sources(specs: list[SourceSpec], ring_seconds: float) -> list[Source]:
    """Open every source; one that cannot be opened is logged and kept as a :class:`FailedSource`.

    Raises
    ------
    SourceError
        If no source at all can be opened (the first one's error).
    """
    sources: list[Source] = []
    errors: list[SourceError] = []
    for spec in specs:
        try:
            sources.append(open_source(spec, ring_seconds))
        except SourceError as exc:
            errors.append(exc)
            sources.append(FailedSource(spec, str(exc)))
    if len(errors) == len(specs):
        raise errors[0]
    for exc in errors:
        log.error("%s; the other streams go on", exc)
    return sources


if __name__ == "__main__":  # the PortAudio child of MicSource: ``query TARGET`` or ``capture TARGET RATE``
    if sys.argv[1] == "query":
        sys.exit(_query(sys.argv[2]))
    _capture(sys.argv[2], int(sys.argv[3]))
