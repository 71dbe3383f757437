"""Audio sources: each writes mono ``float32`` samples at its own rate into its stream's ring buffer.

| spec | class | pacing |
|---|---|---|
| ``mic[:DEVICE]`` | :class:`MicSource` | live: a PortAudio child; reopened with backoff when the device fails |
| ``file:PATH`` | :class:`FileSource` | live: paced by the wall clock, as if it were being played (one file player process for all, daemon/file_player.py) |
| ``file+fast:PATH`` | :class:`FileSource` | as fast as the worker reads (the ring makes it wait) |
| ``stdin:FORMAT:RATE:CHANNELS`` | :class:`StdinSource` | as written; the ring makes the writer wait when full |
| ``ffmpeg:URL`` | :class:`FfmpegSource` | as ffmpeg decodes (one pipe reader process for all, daemon/pipe_reader.py); a finite input ends, a live one (no stated duration) is live from its first audio and reopened with backoff |

The children of ``ffmpeg:`` write to pipes that one process reads for all of them into rings in shared
memory (the pipe reader, daemon/pipe_reader.py; where rings cannot be shared, and for ``mic``, one
:class:`PipeHub` thread of the daemon's); each source's own thread only starts its child, watches it
and decides what its exit means.

A live ring drops its oldest audio when the worker falls behind (counted); the others apply
backpressure. Resampling to 44.1 kHz happens on the reader's side (the worker), never in a callback.

Lifecycle. Each source queues its changes in :attr:`Source.changes` as ``(state, reason)`` pairs for
the daemon to publish: ``running`` at its first audio, ``down`` when a child source stops delivering
(the child exited or stalled), ``up`` when its audio returns. How a source finishes is in
:attr:`Source.state` (``ended`` or ``failed``) and :attr:`Source.reason`; the daemon announces it once
the stream's last windows are out.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import http.client
import json
import logging
import os
import re
import selectors
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Callable, Protocol

import numpy as np
import soundfile

from instrumentd.pipeline.audio import BOUNDED_SUBTYPES, PcmReader, mono_block
from instrumentd.pipeline.errors import InstrumentdError

from .config import SourceSpec
from .file_player import PLAYER, PacedFile
# the hub reads in rounds as the pipe reader does: their lengths and the most read from a pipe at a time
from .pipe_reader import (MANY as HUB_MANY, READ_MAX as HUB_READ, READER, SLICE_MANY_S as HUB_SLICE_MANY_S,
                          SLICE_S as HUB_SLICE_S)
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
PERMANENT_TRIES = 3  # attempts at an input that fails with a permanent error before the source fails
CHILD_LINES = 50  # last stderr lines of a child kept for its exit report
NETWORK_STALL = 10.0  # seconds a network input may go without audio before its ffmpeg is killed and reopened
NETWORK_FIRST_AUDIO = 30.0  # seconds a network input may take to connect and probe before its first audio
HEAD_TIMEOUT = 5.0  # seconds allowed for the HEAD request that asks an HTTP server for an input's length
FINITE_SLACK_S = 1.0  # seconds short of its stated duration an input may end and still count as complete
PACED_BLOCK_S = 0.02  # seconds: a paced file's audio goes into its ring in blocks this long, each once it is due
PACED_BLOCK_MANY_S = 0.1  # seconds: the block when a daemon paces more than PACED_MANY files
PACED_MANY = 100  # paced files past which each file's blocks grow (fewer ring writes per second)
PACER_MIN_WAIT = 0.002  # seconds the pacer sleeps at least between rounds
STOP_ALL_S = 5.0  # seconds stop_sources waits for all the sources' threads together
STOP_GRACE_S = 0.5  # seconds a child source's process has to exit after SIGTERM before it is killed
# a child source's thread looks for a stall every tenth of the time that makes one (a network input: every
# second; an input device, 0.2 s), at least every CHILD_WATCH_S: with a thousand sources, four wake-ups a
# second each took a fifth of the daemon's interpreter time spent on reading their pipes
STALL_CHECKS = 10
CHILD_WATCH_S = 1.0


class SourceError(InstrumentdError):
    """A source that cannot be opened: missing file, no such audio device, no ffmpeg."""


class Source:
    """Base: owns a ring buffer; ``start()`` begins filling it, ``stop()`` ends and closes it.

    ``state`` (what the status heartbeat reports) is one of ``starting``, ``running``, ``restarting``,
    ``ended``, ``failed``; ``reason`` says why it ended or failed. ``changes`` queues lifecycle events
    ``(state, reason)`` (``running``, ``down``, ``up``) for the daemon, which takes them from another thread;
    ``news`` is set with each one (the daemon gives all its sources one Event, so that its loop looks
    at their queues only when one has something).
    """

    live = False
    ending = "end of input"  # reason given when the input runs out
    staggered = False  # its windows' phases are spread by its start (paced files: see open_sources)

    def __init__(self, spec: SourceSpec, rate: int, ring_seconds: float):
        self.spec = spec
        self.name = spec.name
        self.rate = rate
        self.ring = RingBuffer(int(self._ring_seconds(ring_seconds) * rate), rate, blocking=not self.live)
        self.state = "starting"
        self.reason = ""
        self.changes: collections.deque[tuple[str, str]] = collections.deque()
        self.news = threading.Event()  # set when changes (or the stream's notes) got an entry
        self.restarts = 0
        self.xruns = 0  # PortAudio input overflows reported to the callback
        self._flowing = False  # audio has come since the start or the last outage
        self._down_since: float | None = None  # time.monotonic() when an outage began
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _ring_seconds(self, ring_seconds: float) -> float:
        """Seconds of audio the ring holds: ``ring_seconds`` for a live source, else what a window, a hop
        and the pitch lag need (the writer waits for room)."""
        return ring_seconds if self.live else BLOCKING_RING_SECONDS

    @property
    def realtime(self) -> bool:
        """True when audio comes at the pace of a clock (a device, a paced file, a live network stream),
        not as fast as it is read."""
        return self.live

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_guarded, name=f"source-{self.name}", daemon=True)
        self._thread.start()

    def _run_guarded(self) -> None:
        try:
            self._run()
            if self.state != "failed":
                self.state, self.reason = "ended", self.reason or self.ending
        except (OSError, soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
            self.state, self.reason = "failed", str(exc)
            log.error("source %s failed: %s", self.name, exc)
        finally:
            self.ring.close()

    def _run(self) -> None:
        raise NotImplementedError

    def _write(self, samples: np.ndarray) -> None:
        """Put ``samples: float32 [n]`` in the ring; the first audio, and the first after an outage, is noted."""
        if len(samples):
            self.flowing()
        self.ring.write(samples)

    def flowing(self) -> None:
        """Audio is coming: noted at the first of each run (``running``, or ``up`` after an outage)."""
        if self._flowing:
            return
        self._flowing = True
        self.state = "running"
        self._first_audio()
        if self._down_since is None:
            self._note("running", "audio flowing")
        else:
            self._note("up", f"audio back after {time.monotonic() - self._down_since:.1f} s")
            self._down_since = None

    def _first_audio(self) -> None:
        """Called with the first audio of each run, before it goes into the ring."""

    def _went_down(self, reason: str) -> None:
        """The source stopped delivering; noted once per outage (also when it never delivered at all)."""
        self.state = "restarting"
        self._flowing = False
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._note("down", reason)

    def _note(self, state: str, reason: str) -> None:
        """Queue a lifecycle event for the daemon, and tell it there is one."""
        self.changes.append((state, reason))
        self.news.set()

    def stop(self) -> None:
        """Stop producing audio; what is already in the ring stays readable."""
        self.request_stop()
        self.join(1.0)

    def request_stop(self) -> None:
        """Tell the source to stop and close its ring, without waiting for its thread (:meth:`join`)."""
        self._stop.set()
        self.ring.close()

    def hurry(self) -> None:
        """After :meth:`request_stop`: end what would keep the source's thread from ending (default: nothing)."""

    def join(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the source's thread to end, after :meth:`request_stop`."""
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    @property
    def ended(self) -> bool:
        """True once no more audio will come and the ring is empty."""
        return self.ring.closed and self.ring.available() == 0


class FileSource(Source):
    """A file soundfile can read, mixed to mono; ``realtime`` paces it by the wall clock.

    A paced file has no thread of its own: the file player (a child process, daemon/file_player.py;
    where there is none, the process's :class:`Pacer` thread) writes each of its blocks when the
    block's last sample is due, from ``delay_s`` seconds after :meth:`start` (set by
    :func:`open_sources` to spread the files of one daemon over the hop). ``file+fast:`` reads in a
    thread of its own, as fast as its ring takes the audio.
    """

    ending = "end of file"

    def __init__(self, spec: SourceSpec, ring_seconds: float, realtime: bool):
        self.live = realtime
        self.staggered = realtime
        path = spec.target
        if os.path.exists(path) and not os.path.isfile(path):  # a FIFO or device would block start-up
            raise SourceError(f"source {spec.name}: {path!r} is not a regular file (for a pipe use stdin: or ffmpeg:)")
        try:
            info = soundfile.info(os.fsencode(path))  # bytes: a name that is not UTF-8 opens as it is
        except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
            raise SourceError(f"source {spec.name}: cannot open {path!r} ({exc})") from None
        super().__init__(spec, int(info.samplerate), ring_seconds)
        self.path = os.fsencode(path)
        self.bounded = info.subtype in BOUNDED_SUBTYPES  # decoded samples need no sanitising
        self.block = max(1, int(self.rate * (PACED_BLOCK_S if realtime else 0.5)))  # samples: 20 ms paced, 0.5 s fast
        self.delay_s = 0.0  # paced: seconds from start() to the file's first sample
        self.player_id: int | None = None  # paced by the file player: its id there

    def start(self) -> None:
        if not self.live:
            super().start()
        elif PLAYER.available():
            PLAYER.add(self)
        else:
            PACER.add(self)

    def request_stop(self) -> None:
        super().request_stop()
        if self.live:
            PLAYER.stop(self)
            if self.state != "failed":  # as a thread of its own would have ended
                self.state, self.reason = "ended", self.reason or self.ending

    def finish(self, failed: bool, reason: str) -> None:
        """No more audio will come from the pacing: the file ended (``reason``, default :attr:`ending`), or
        failed with ``reason``; the ring is closed."""
        if failed:
            self.state, self.reason = "failed", reason
            log.error("source %s failed: %s", self.name, reason)
        elif self.state != "failed":
            self.state, self.reason = "ended", self.reason or reason or self.ending
        self.ring.close()

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
                self._write(mono_block(block, self.bounded))
                done += len(block)


class Pacer:
    """One thread that plays every paced ``file:`` source of the process in real time, where the file
    player cannot run (no ``memfd``: not Linux); the same rounds as the player's, in the daemon.

    Each round writes, for every file, the blocks whose last sample is due (one ring write), then
    sleeps until the next block of any file is due. A thread per file woke fifty times a second
    each, and on a 2-core machine sixteen of them took a sixth of a core; here the files share the
    wake-ups and each file is decoded half a second at a time. A file that ends, fails or is stopped
    closes its ring and leaves; the thread exits when none is left and starts again with the next.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._playing = 0  # files added and not finished
        self._added: list[tuple[PacedFile, FileSource]] = []  # files added since the thread's last round
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, source: FileSource) -> None:
        """Start playing ``source`` ``source.delay_s`` seconds from now."""
        try:
            paced = PacedFile(source.path, source.block, time.monotonic() + source.delay_s)
        except (OSError, soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
            source.finish(failed=True, reason=str(exc))
            return
        with self._lock:
            self._added.append((paced, source))
            self._playing += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="source-pacer", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        """Rounds until no file is left: each plays only the files whose next block is due (a heap by due
        time), so a round costs what it writes, not a call per file: with 300 files staggered over
        the hop, rounds come every few milliseconds. Files added since the last round join the heap;
        the round never walks the files it does not play."""
        heap: list[tuple[float, int, tuple[PacedFile, FileSource]]] = []  # (next block due, tie-break, file)
        while True:
            with self._lock:
                if not self._playing:
                    self._thread = None
                    return
                added, self._added = self._added, []
            for item in added:
                heapq.heappush(heap, (item[0].due(), id(item), item))
            now = time.monotonic()
            due = []
            while heap and heap[0][0] <= now:
                due.append(heapq.heappop(heap)[2])
            finished = []
            for item in due:
                if self._play(*item, now):
                    heapq.heappush(heap, (item[0].due(), id(item), item))
                else:
                    finished.append(item[0])
            if finished:
                with self._lock:
                    self._playing -= len(finished)
                for paced in finished:
                    paced.close()
            wait = (heap[0][0] if heap else now) - time.monotonic()
            self._wake.wait(max(PACER_MIN_WAIT, wait))
            self._wake.clear()

    @staticmethod
    def _play(paced: PacedFile, src: FileSource, now: float) -> bool:
        """Write the file's due blocks; False once it has ended, failed or been stopped (its ring closed)."""
        if src._stop.is_set():
            src.ring.close()
            return False
        try:
            data = paced.take_due(now)
            if len(data):
                src._write(data)
        except (OSError, soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
            src.finish(failed=True, reason=str(exc))
            return False
        if paced.finished:
            src.finish(failed=False, reason=src.ending)
            return False
        return True


PACER = Pacer()  # the process's one pacer for paced files, where the file player cannot run


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
            self._write(self.reader.push(data))


@dataclasses.dataclass
class ChildExit:
    """How one run of a child source ended: exit ``code`` (negative: killed by that signal), ``audio_s``
    seconds of audio it delivered, ``stalled`` the seconds it went without a sample before it was killed
    (0: it exited by itself), and its last stderr ``lines``."""

    code: int
    audio_s: float
    stalled: float
    lines: list[str]

    @property
    def last_line(self) -> str:
        """The child's own last words, a hint (``Did you mean ...``) joined to the error it explains."""
        lines = self.lines[-2:] if self.lines[-1:] and self.lines[-1].startswith("Did you mean") else self.lines[-1:]
        return "; ".join(lines)


class ChildPipe(Protocol):
    """A child's stdout as its source's thread watches it, read by the hub (:class:`_Pipe`) or by the pipe
    reader (:class:`~instrumentd.daemon.pipe_reader.ReadPipe`)."""

    done: threading.Event  # set once the pipe is read to its end or removed
    lost: bool  # True when its reader exited under it (the child is then restarted)

    @property
    def samples(self) -> int:
        """Samples delivered so far."""

    @property
    def last_data(self) -> float:
        """time.monotonic() when input last came (at first: when the child started)."""


class _ChildSource(Source):
    """A child process that writes mono little-endian ``float32`` samples at ``rate`` hz to its stdout.

    The child is started from an argument list (no shell). When it exits, or, when ``stall_s`` is set,
    writes nothing for ``stall_s`` seconds, :meth:`verdict` decides: ``ended`` (a finite input read to its
    end: the source ends), ``permanent`` (an error that another try will not fix: after
    ``PERMANENT_TRIES`` tries in a row the source fails) or ``transient`` (an outage: the source is
    ``down`` and the child is started again with backoff, ``BACKOFF_FIRST`` doubling to ``BACKOFF_MAX``,
    starting over after ``BACKOFF_RESET`` s of healthy running). Each restart counts in ``restarts``
    and marks a break in the ring: the stream's features start over and its clock jumps by the outage.
    The child's stderr is kept and its last line logged when it exits.
    """

    what = "child"  # names the child in log lines
    stall_s: float | None = None  # seconds without a sample after which a running child is killed
    first_s = CHILD_FIRST_AUDIO  # seconds a new child may take to start before the first sample
    # True: the audio of a new child begins when it starts (a network input, whose first seconds ffmpeg
    # delivers in one burst once it has probed them); False: with its first block (a device)
    audio_from_start = False

    def __init__(self, spec: SourceSpec, rate: int, ring_seconds: float):
        super().__init__(spec, rate, ring_seconds)
        self.shared = False  # the pipe reader fills the ring (daemon/pipe_reader.py), not the daemon's PipeHub
        self._child: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._termed_at = 0.0  # time.monotonic() of request_stop's SIGTERM
        self.backoff = BACKOFF_FIRST

    def command(self) -> list[str]:
        raise NotImplementedError

    def _run_guarded(self) -> None:
        try:
            super()._run_guarded()
        finally:
            if self.shared:
                READER.forget(self)

    def verdict(self, run: ChildExit) -> str:
        """``ended``, ``permanent`` or ``transient`` for a child that exited (default: always an outage)."""
        return "transient"

    def _stderr_line(self, line: str, lines: collections.deque[str]) -> None:
        lines.append(line)

    def _drain(self, child: subprocess.Popen, lines: collections.deque[str]) -> None:
        for raw in child.stderr:
            line = raw.decode(errors="replace").strip()
            if line:
                self._stderr_line(line, lines)

    def _run(self) -> None:
        tries = 0  # permanent failures in a row
        while not self._stop.is_set():
            started = time.monotonic()
            run = self._run_child()
            if self._stop.is_set():
                return
            verdict = self.verdict(run)
            said = (f"no audio for {run.stalled:g} s" if run.stalled else
                    f"code {run.code}" + (f": {run.last_line}" if run.last_line else ""))
            if verdict == "ended":
                self.reason = self.ending
                log.info("source %s: %s reached the end of its input (%s)", self.name, self.what, said)
                return
            tries = tries + 1 if verdict == "permanent" else 0
            if tries >= PERMANENT_TRIES:
                self.state, self.reason = "failed", f"{self.what}: {run.last_line or said}"
                log.error("source %s failed after %d tries: %s exited (%s)", self.name, tries, self.what, said)
                return
            if time.monotonic() - started > BACKOFF_RESET:
                self.backoff = BACKOFF_FIRST
            if verdict == "transient":
                self._went_down(f"{self.what} exited ({said})")
            else:
                self.state = "restarting"
            self.restarts += 1
            log.warning("source %s: %s exited (%s); restarting in %.1f s", self.name, self.what, said, self.backoff)
            if self._stop.wait(self.backoff):
                return
            self.backoff = min(BACKOFF_MAX, self.backoff * 2)
            self.ring.mark_break(time.monotonic() if self.audio_from_start else None)

    def _run_child(self) -> ChildExit:
        with self._lock:
            if self._stop.is_set():
                return ChildExit(0, 0.0, 0.0, [])
            self._child = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE)
        child = self._child
        lines: collections.deque[str] = collections.deque(maxlen=CHILD_LINES)
        drain = threading.Thread(target=self._drain, args=(child, lines), daemon=True)
        drain.start()
        reader = READER if self.shared else HUB
        pipe = reader.add(child.stdout, self)
        stalled = 0.0
        while not pipe.done.wait(self._watch_s(pipe)) and not self._stop.is_set():
            if self.stall_s is None:
                continue
            limit = self._stall_limit(pipe)
            idle = time.monotonic() - pipe.last_data
            if idle > limit:
                stalled = limit
                child.kill()
                break
        if pipe.lost:  # the pipe reader exited: its child goes too, and starts again as after an outage
            child.kill()
        code = child.wait()
        reader.remove(pipe)
        drain.join(timeout=1)
        child.stdout.close()
        child.stderr.close()
        return ChildExit(code, pipe.samples / self.rate, stalled, list(lines))

    def _stall_limit(self, pipe: ChildPipe) -> float:
        """Seconds without audio that make a stall: ``first_s`` until the child's first sample, then ``stall_s``."""
        return self.stall_s if pipe.samples else self.first_s

    def _watch_s(self, pipe: ChildPipe) -> float:
        """Seconds until the next look for a stall (or for the end of the pipe, without stall detection)."""
        return CHILD_WATCH_S if self.stall_s is None else min(CHILD_WATCH_S, self._stall_limit(pipe) / STALL_CHECKS)

    def request_stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._termed_at = time.monotonic()
            if self._child is not None and self._child.poll() is None:
                self._child.terminate()
        super().request_stop()

    def hurry(self) -> None:
        """After :meth:`request_stop`: the child has ``STOP_GRACE_S`` from its SIGTERM to exit, and is killed
        past it (ffmpeg 7 reading a live network stream does not exit on SIGTERM)."""
        child = self._child
        if child is not None:
            grace = self._termed_at + STOP_GRACE_S - time.monotonic()  # sources stopped together share it
            try:
                child.wait(max(0.0, grace))
            except subprocess.TimeoutExpired:
                child.kill()

    def join(self, timeout: float) -> None:
        """After :meth:`request_stop`: the child is hurried (:meth:`hurry`), then the thread ends."""
        self.hurry()
        super().join(timeout)
        if self._child is not None and self._child.poll() is None:
            self._child.kill()


class _Pipe:
    """A child's stdout in the hub (a :class:`ChildPipe`): mono little-endian float32 samples for ``source``'s ring."""

    def __init__(self, fd: int, source: Source):
        self.fd = fd
        self.source = source
        self.pcm = PcmReader("<f4", 1)
        self.samples = 0  # samples delivered
        self.last_data = time.monotonic()  # when the last bytes came (at first: when the child started)
        self.done = threading.Event()  # set once the hub has stopped reading this pipe (end of file or removed)
        self.removed = False
        self.lost = False  # the hub never loses a pipe (the pipe reader's can: daemon/pipe_reader.py)

    def feed(self, data: bytes) -> None:
        self.last_data = time.monotonic()
        samples = self.pcm.push(data)
        if len(samples):
            self.source._write(samples)
            self.samples += len(samples)


class PipeHub:
    """One thread that reads the stdout pipes of every child source in the process.

    A thread per child woke for each block its child wrote (ffmpeg writes about 40 a second per
    stream); here one thread waits on all the pipes (``selectors``), reads what each holds, and waits
    :data:`HUB_SLICE_S` between rounds so that the pipes fill and are read in fewer, larger pieces
    (:data:`HUB_SLICE_MANY_S` past :data:`HUB_MANY` pipes: a thousand pipes read every 20 ms would take
    50,000 reads a second of the daemon's one interpreter, and each block then reaches its ring up
    to 100 ms later, as a paced file's blocks do past ``PACED_MANY`` files).
    A backpressured source (``ffmpeg:`` of a local file) whose ring is full is not read until the
    worker has made room, so its child waits on the pipe instead of the hub waiting on the ring.
    The thread exits when no pipe is left and starts again with the next.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._pipes: list[_Pipe] = []
        self._selector: selectors.BaseSelector | None = None
        self._thread: threading.Thread | None = None

    def add(self, stdout, source: Source) -> _Pipe:
        """Read ``stdout`` (a child's pipe) into ``source``'s ring from now on; the pipe's ``done`` is set at
        its end of file."""
        fd = stdout.fileno()
        pipe = _Pipe(fd, source)
        os.set_blocking(fd, False)
        with self._lock:
            if self._thread is None:
                self._selector = selectors.DefaultSelector()
                self._thread = threading.Thread(target=self._run, args=(self._selector,), name="source-pipes",
                                                daemon=True)
                self._thread.start()
            self._selector.register(fd, selectors.EVENT_READ, pipe)
            self._pipes.append(pipe)
        return pipe

    def remove(self, pipe: _Pipe) -> None:
        """Stop reading ``pipe`` (its child has exited); returns once the hub no longer touches its fd."""
        with self._lock:
            if pipe in self._pipes:
                pipe.removed = True
        pipe.done.wait(1.0 + 2 * HUB_SLICE_MANY_S)

    def _drop(self, selector: selectors.BaseSelector, pipe: _Pipe) -> None:
        with self._lock:
            selector.unregister(pipe.fd)
            self._pipes.remove(pipe)
        pipe.done.set()

    def _run(self, selector: selectors.BaseSelector) -> None:
        while True:
            with self._lock:
                gone = [p for p in self._pipes if p.removed]
            for pipe in gone:
                self._drop(selector, pipe)
            with self._lock:
                if not self._pipes:
                    self._thread = None
                    selector.close()
                    return
            for key, _ in selector.select(0.1):
                pipe = key.data
                if pipe.done.is_set():
                    continue
                ring = pipe.source.ring
                want = HUB_READ
                if ring.blocking:
                    want = min(want, 4 * ring.room())
                    if want <= 0:  # the worker is behind, not the child: no stall
                        pipe.last_data = time.monotonic()
                        continue
                try:
                    data = os.read(pipe.fd, want)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    pipe.feed(data)
                else:
                    self._drop(selector, pipe)
            time.sleep(HUB_SLICE_S if len(self._pipes) <= HUB_MANY else HUB_SLICE_MANY_S)


HUB = PipeHub()  # the process's one reader of child sources' pipes


# ffmpeg errors that another try will not fix: a missing or unreadable file, a bad scheme, an HTTP 4xx,
# data no demuxer knows, an input with no audio stream
_PERMANENT = re.compile(r"No such file or directory|Protocol not found|Server returned 4\d\d|HTTP error 4\d\d"
                        r"|Invalid data found when processing input|Permission denied|Is a directory"
                        r"|does not contain any stream|matches no streams|Invalid argument")
_DURATION = re.compile(r"^\s*Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_LEVEL = re.compile(r"^(?:\[[^\]]+ @ 0x[0-9a-f]+\] )?\[(\w+)\] ?")  # ffmpeg's "[ctx @ 0x..] [level] " prefix


class FfmpegSource(_ChildSource):
    """``ffmpeg -i URL`` decoded to 44.1 kHz mono float32 on a pipe.

    A finite input ends the source: a local file (a path, ``file:``) once ffmpeg has decoded anything,
    a network one when ffmpeg exits 0 having delivered its stated duration, or, where ffmpeg states
    none (Ogg over HTTP without range requests), when an HTTP server announced its length
    (``Content-Length`` in the answer to a ``HEAD`` request). A live input (no duration, no length: a
    radio stream, a socket) that drops, or sends nothing for ``NETWORK_STALL`` s, is an outage: ``down``,
    then reopened with backoff and ``up`` when audio returns. An error another try will not fix (``_PERMANENT``: no such
    file, a bad scheme, a 404, data no demuxer knows) fails the source after ``PERMANENT_TRIES`` tries;
    a local input that yields no audio counts as one too.
    """

    what = "ffmpeg"
    audio_from_start = True

    def __init__(self, spec: SourceSpec, ring_seconds: float, ffmpeg: str | None = None):
        self.url = spec.target
        self.local = not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", self.url) or self.url.startswith("file:")
        super().__init__(spec, FFMPEG_RATE, ring_seconds)
        self.ffmpeg = ffmpeg or shutil.which("ffmpeg")
        if not self.ffmpeg:
            raise SourceError(f"source {spec.name}: ffmpeg is not installed (needed for {spec.spec!r})")
        if not self.local:  # a connection that hangs without closing is an outage too
            self.stall_s, self.first_s = NETWORK_STALL, NETWORK_FIRST_AUDIO
        self.duration_s: float | None = None  # the input's stated duration, None for a live input
        self.length: int | None = None  # bytes an HTTP server announced for the input, None if none
        self._asked = False
        if READER.available():
            READER.share(self)
            self.shared = True

    def _ring_seconds(self, ring_seconds: float) -> float:
        """A network input may turn out live (known once ffmpeg has opened it), and its ring then holds what
        a live source's does, ``ring_seconds``, from the start; a local one is read as fast as the worker reads."""
        return BLOCKING_RING_SECONDS if self.local else ring_seconds

    def command(self) -> list[str]:
        # info level for the "Duration:" line that tells a finite input from a live one; -nostats keeps it short
        return [self.ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "repeat+level+info", "-i", self.url,
                "-vn", "-ac", "1", "-ar", str(FFMPEG_RATE), "-f", "f32le", "pipe:1"]

    def _stderr_line(self, line: str, lines: collections.deque[str]) -> None:
        level = _LEVEL.match(line)
        text = line[level.end():] if level else line
        duration = _DURATION.match(text)
        if duration:
            h, m, sec = duration.groups()
            self.duration_s = 3600 * int(h) + 60 * int(m) + float(sec)
        elif level is None or level.group(1) in ("error", "fatal", "panic"):
            lines.append(text)

    @property
    def realtime(self) -> bool:
        """A network input without a stated duration (a radio stream, a socket) comes in real time; known
        once ffmpeg has opened it."""
        return not self.local and self.duration_s is None and self.length is None

    def _first_audio(self) -> None:
        """A live input becomes a live source: when the daemon falls behind, its oldest audio is dropped and
        counted, as a microphone's is, instead of holding the sender back (which only grows its delay
        until the server drops the connection)."""
        if self.realtime and not self.live:
            self.live = True
            self.ring.go_live()
            log.info("source %s: a live stream (no stated duration): if the daemon falls behind, its oldest "
                     "audio is dropped and counted", self.name)

    def _run_child(self) -> ChildExit:
        if not self._asked and re.match(r"https?://", self.url, re.IGNORECASE):
            self._asked = True
            self.length = _http_length(self.url)
        self.duration_s = None
        return super()._run_child()

    def verdict(self, run: ChildExit) -> str:
        if run.audio_s > 0 and not run.stalled:
            if self.local:
                return "ended"
            if run.code == 0 and self.duration_s is not None and run.audio_s >= self.duration_s - FINITE_SLACK_S:
                return "ended"
            if run.code == 0 and self.duration_s is None and self.length is not None:
                return "ended"
        if run.audio_s == 0 and (self.local or any(_PERMANENT.search(line) for line in run.lines)):
            return "permanent"
        return "transient"


def _http_length(url: str) -> int | None:
    """The ``Content-Length`` an HTTP server gives for ``url`` in answer to ``HEAD``; None when it gives none
    (a live stream) or the request fails (then ffmpeg, which tries next, reports why)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=HEAD_TIMEOUT) as answer:
            length = answer.headers.get("Content-Length")
            chunked = "chunked" in answer.headers.get("Transfer-Encoding", "").lower()
    except (OSError, ValueError, http.client.HTTPException):
        return None
    return int(length) if length and length.isdigit() and not chunked else None


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

    def _stderr_line(self, line: str, lines: collections.deque[str]) -> None:
        if line == _OVERFLOW.decode().strip():
            self.xruns += 1
        else:
            lines.append(line)


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


def stop_sources(sources: list[Source], timeout: float = STOP_ALL_S) -> None:
    """Stop every source together: each is told first (children terminated, rings closed), then every
    child still running past the grace they share is killed, then their threads are awaited for at
    most ``timeout`` seconds in all. One after another, each child source took up to a second to wind
    down (its watch, its pipe leaving the hub), and a daemon with a thousand ``ffmpeg:`` sources took
    minutes to stop; together they take about what one takes. A thousand children that ignore
    SIGTERM (ffmpeg 7 on a live stream), each killed only once the thread of the one before had
    ended, took the whole ``timeout``, their audio piling up unread meanwhile."""
    for src in sources:
        src.request_stop()
    deadline = time.monotonic() + timeout
    for src in sources:
        src.hurry()
    for src in sources:
        src.join(max(0.0, deadline - time.monotonic()))


def open_sources(specs: list[SourceSpec], ring_seconds: float, hop_s: float = 1.0) -> list[Source]:
    """Open every source; one that cannot be opened is logged and kept as a :class:`FailedSource`.

    The ``k``-th of ``n`` paced files starts ``k / n`` of a hop (``hop_s`` seconds) after the first.
    Files started together would otherwise have their windows come due at the same moments, and one
    step of the worker would do the whole hop's work while every window waits for it (on a 2-core
    CPU, 16 files: p99 650 ms); spread, each step serves a window or two, as for independent live
    streams. Stream time is unchanged: each file's windows start at 0 s of the file. Past
    :data:`PACED_MANY` paced files each is written in 100 ms blocks instead of 20 ms (a thousand files
    would otherwise take 50,000 ring writes a second of the daemon's one interpreter).

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
    paced = [src for src in sources if isinstance(src, FileSource) and src.live]
    for k, src in enumerate(paced):
        src.delay_s = hop_s * k / len(paced)
        if len(paced) > PACED_MANY:
            src.block = max(1, int(src.rate * PACED_BLOCK_MANY_S))
    for exc in errors:
        log.error("%s; the other streams go on", exc)
    return sources


def prepare_sources(sources: list[Source]) -> None:
    """Start what the sources will need before they start: the file player, when paced files will play
    through it. Started as the daemon sets its streams up, it has imported its modules by the time the
    files are handed to it (started by the first file, it kept a thousand hand-overs waiting)."""
    if PLAYER.available() and any(isinstance(src, FileSource) and src.live for src in sources):
        try:
            PLAYER.start()
        except OSError as exc:  # the first paced file tries again
            log.warning("the file player did not start (%s); the first paced file tries again", exc)


if __name__ == "__main__":  # the PortAudio child of MicSource: ``query TARGET`` or ``capture TARGET RATE``
    if sys.argv[1] == "query":
        sys.exit(_query(sys.argv[2]))
    _capture(sys.argv[2], int(sys.argv[3]))
