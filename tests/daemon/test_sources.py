"""Sources on their own: an ``ffmpeg:`` network input that stalls is an outage, noted ``down`` then ``up``;
paced files share one player (the file player process, or the pacer thread where it cannot run) and
child sources one pipe reader, each delivering all its audio."""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile

from instrumentd.daemon import sources
from instrumentd.daemon.config import SourceSpec, parse_source
from instrumentd.daemon.file_player import FilePlayer

from ..conftest import live_children, until
from .conftest import SR, melody


def _threads(name: str) -> int:
    return sum(t.name == name for t in threading.enumerate())


def _drain(srcs, stop: threading.Event, got: list[list[np.ndarray]]) -> None:
    """Read the rings as the worker would, keeping what each gives."""
    while not stop.wait(0.02):
        for i, src in enumerate(srcs):
            got[i].append(src.ring.read()[0])


def test_paced_files_share_one_player_and_each_plays_in_real_time_to_its_end(tmp_path, player):
    path = tmp_path / "one.wav"
    audio = melody(1.2)
    soundfile.write(path, audio, SR, subtype="PCM_16")
    srcs = [sources.open_source(parse_source(f"f{i}=file:{path}"), 10.0) for i in range(8)]
    stop, got = threading.Event(), [[] for _ in srcs]
    reader = threading.Thread(target=_drain, args=(srcs, stop, got), daemon=True)
    reader.start()
    t0 = time.monotonic()
    for src in srcs:
        src.start()
    try:
        assert not any(t.name.startswith("source-f") for t in threading.enumerate())
        if player == "thread":
            assert _threads("source-pacer") == 1
        else:
            assert _threads("source-pacer") == 0 and sources.PLAYER.pid in live_children()
        assert until(lambda: all(src.ended for src in srcs), 10)
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        reader.join()
    assert elapsed >= 1.2 - 0.03  # paced: not faster than the file lasts (the last block may come a block early)
    want = soundfile.read(path, dtype="float32")[0]
    for heard in got:
        np.testing.assert_array_equal(np.concatenate(heard), want)  # every sample, in order, as decoded
    assert all(src.state == "ended" and src.reason == "end of file" for src in srcs)
    assert all(list(src.changes) == [("running", "audio flowing")] for src in srcs)
    assert until(lambda: _threads("source-pacer") == 0, 1)  # no file left: no thread (the process stays)


def test_paced_files_opened_together_start_spread_over_the_hop(tmp_path, player):
    """Four files of one daemon: the k-th starts k/4 of a hop after the first, so their windows come due apart."""
    path = tmp_path / "one.wav"
    soundfile.write(path, melody(0.5), SR, subtype="PCM_16")
    specs = [parse_source(f"f{i}=file:{path}") for i in range(4)]
    srcs = sources.open_sources(specs, 10.0, hop_s=2.0)
    assert [src.delay_s for src in srcs] == [0.0, 0.5, 1.0, 1.5]
    t0 = time.monotonic()
    for src in srcs:
        src.start()
    assert until(lambda: all(src.ring.closed for src in srcs), 10)
    first = np.array([src.ring.arrival(0) for src in srcs]) - t0  # when each file's first block came
    assert np.all(first >= [0.0, 0.5, 1.0, 1.5]) and np.all(first < np.array([0.0, 0.5, 1.0, 1.5]) + 0.25), first
    assert [src.ring.available() for src in srcs] == [int(0.5 * SR)] * 4


def test_the_file_player_starts_before_the_paced_files_and_plays_none_until_they_start(tmp_path, monkeypatch):
    """The daemon readies its sources' player while it sets its streams up, before it starts them: the
    player process is up by then (its start-up is not paid while the files are handed over), and idle."""
    if not sources.PLAYER.available():
        pytest.skip("no memfd here")
    player = FilePlayer()
    monkeypatch.setattr(sources, "PLAYER", player)
    path = tmp_path / "one.wav"
    soundfile.write(path, melody(0.3), SR, subtype="PCM_16")
    try:
        srcs = sources.open_sources([parse_source(f"f{i}=file:{path}") for i in range(3)], 10.0)
        assert player.pid is None  # opening a source starts nothing: a daemon that then fails leaves no child
        sources.prepare_sources(srcs)
        assert player.pid in live_children()
        time.sleep(0.3)
        assert all(src.ring.written == 0 for src in srcs)
        for src in srcs:
            src.start()
        assert until(lambda: all(src.ring.closed for src in srcs), 5)
        assert [src.ring.available() for src in srcs] == [int(0.3 * SR)] * 3
        assert all(src.state == "ended" for src in srcs)
    finally:
        player._sock.close()  # the player exits with its socket


def test_a_paced_file_stopped_midway_ends_and_is_played_no_more(tmp_path, player):
    path = tmp_path / "long.wav"
    soundfile.write(path, melody(30.0), SR, subtype="PCM_16")
    src = sources.open_source(parse_source(f"long=file:{path}"), 10.0)
    src.start()
    assert until(lambda: src.state == "running", 5)
    src.stop()
    assert src.state == "ended" and src.ring.closed
    written = src.ring.available()
    time.sleep(0.3)  # a block already on its way may land; none after that
    assert src.ring.available() - written <= int(0.1 * SR)
    later = src.ring.available()
    time.sleep(0.3)
    assert src.ring.available() == later
    assert until(lambda: _threads("source-pacer") == 0, 1)


def test_a_paced_file_gone_before_it_plays_fails_with_the_reason(tmp_path, player):
    """Opened (checked) by the daemon, then deleted before its player opens it: the stream fails and
    says why; the player goes on with the next file."""
    gone, kept = tmp_path / "gone.wav", tmp_path / "kept.wav"
    for path in (gone, kept):
        soundfile.write(path, melody(0.5), SR, subtype="PCM_16")
    lost, good = (sources.open_source(parse_source(f"{p.stem}=file:{p}"), 10.0) for p in (gone, kept))
    gone.unlink()
    lost.start()
    good.start()
    assert until(lambda: lost.ring.closed and good.ring.closed, 5)
    assert lost.state == "failed" and "gone.wav" in lost.reason, lost.reason
    assert good.state == "ended" and good.ring.available() == int(0.5 * SR)


def test_the_file_player_leaves_unread_audio_alone_and_catches_up_when_read(tmp_path):
    """A 2 s ring nobody reads for 2.5 s: the player stops a quarter of the ring short of the unread audio
    (it never writes over it); once read, the file catches up and every sample arrives, in order."""
    if not sources.PLAYER.available():
        pytest.skip("no memfd here")
    path = tmp_path / "four.wav"
    soundfile.write(path, melody(4.0), SR, subtype="PCM_16")
    src = sources.open_source(parse_source(f"slow=file:{path}"), 2.0)
    src.start()
    time.sleep(2.5)
    assert src.ring.available() == src.ring.capacity - src.ring.capacity // 4
    heard = [src.ring.read()[0]]
    assert until(lambda: src.ring.available() > SR // 4, 2)  # the blocks held back come at once
    while not src.ended:
        heard.append(src.ring.read()[0])
        time.sleep(0.05)
    np.testing.assert_array_equal(np.concatenate(heard), soundfile.read(path, dtype="float32")[0])
    assert src.ring.dropped == 0 and src.state == "ended"


def test_a_file_player_started_by_a_daemon_with_many_open_files_plays(tmp_path):
    """A daemon with a thousand streams has descriptors past 1024 open (logs, files) when its first
    paced file starts: the player's socket is one of them, and must work as a low one does."""
    if not sources.PLAYER.available():
        pytest.skip("no memfd here")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"a hard limit of {hard} open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    held = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        path = tmp_path / "short.wav"
        soundfile.write(path, melody(0.5), SR, subtype="PCM_16")
        src = sources.open_source(parse_source(f"high=file:{path}"), 10.0)
        FilePlayer().add(src)  # a player of its own, started now, above the held descriptors
        assert until(lambda: src.ring.closed, 5)
        assert src.state == "ended" and src.ring.available() == int(0.5 * SR)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_paced_files_fail_when_the_file_player_dies_and_the_next_file_starts_a_new_one(tmp_path):
    if not sources.PLAYER.available():
        pytest.skip("no memfd here")
    path = tmp_path / "long.wav"
    soundfile.write(path, melody(30.0), SR, subtype="PCM_16")
    srcs = [sources.open_source(parse_source(f"f{i}=file:{path}"), 10.0) for i in range(2)]
    for src in srcs:
        src.start()
    assert until(lambda: all(src.state == "running" for src in srcs), 5)
    pid = sources.PLAYER.pid
    os.kill(pid, signal.SIGKILL)
    assert until(lambda: all(src.ring.closed for src in srcs), 5)
    assert all(src.state == "failed" and src.reason == "the file player exited (code -9)" for src in srcs)
    late = sources.open_source(parse_source(f"late=file:{path}"), 10.0)
    late.start()
    assert until(lambda: late.state == "running", 5)
    assert sources.PLAYER.pid not in (None, pid)
    late.stop()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_children_share_one_pipe_reader_and_a_full_ring_loses_nothing(tmp_path, monkeypatch, pipes):
    """Three local files through ffmpeg, longer than their 5 s rings: read slowly, every sample arrives.
    One reader serves them all: the pipe reader process, or where rings cannot be shared, one hub
    thread of the daemon's (here with its rounds 100 ms apart, as past ``HUB_MANY`` pipes)."""
    monkeypatch.setattr(sources, "HUB_MANY", 1)
    path = tmp_path / "clip.flac"
    audio = melody(7.0)[:, 0]
    soundfile.write(path, audio, SR)
    srcs = [sources.open_source(parse_source(f"a{i}=ffmpeg:{path}"), 10.0) for i in range(3)]
    assert all(not src.live and src.ring.capacity == sources.BLOCKING_RING_SECONDS * SR < len(audio) for src in srcs)
    for src in srcs:
        src.start()
    assert until(lambda: all(src.ring.room() == 0 for src in srcs), 10)  # full: the children wait
    if pipes == "process":
        assert _threads("source-pipes") == 0 and sources.READER.pid in live_children()
    else:
        assert _threads("source-pipes") == 1
    stop, got = threading.Event(), [[] for _ in srcs]
    reader = threading.Thread(target=_drain, args=(srcs, stop, got), daemon=True)
    reader.start()
    try:
        assert until(lambda: all(src.ended for src in srcs), 30)
    finally:
        stop.set()
        reader.join()
    assert [sum(map(len, heard)) for heard in got] == [len(audio)] * len(srcs)
    assert all(src.state == "ended" and src.reason == "end of input" for src in srcs)
    assert not any(src.realtime for src in srcs)  # decoded as fast as they are read
    assert until(lambda: _threads("source-pipes") == 0, 2)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_nan_and_huge_samples_from_ffmpeg_reach_the_ring_as_finite_samples_in_range(tmp_path, pipes):
    """A float WAV holding NaN, infinities and samples far out of range, decoded by ffmpeg: what its
    reader (the pipe reader, or the hub thread) writes into the ring is finite and within [-1, 1]."""
    audio = melody(2.0)[:, 0]
    audio[100:200] = np.nan
    audio[300] = np.inf
    audio[400:500] = 1e30
    path = tmp_path / "hostile.wav"
    soundfile.write(path, audio, SR, subtype="FLOAT")
    src = sources.open_source(parse_source(f"h=ffmpeg:{path}"), 10.0)
    src.start()
    got = []
    assert until(lambda: got.append(src.ring.read()[0]) or src.ended, 30)
    heard = np.concatenate(got)
    assert len(heard) == len(audio) and np.isfinite(heard).all() and np.abs(heard).max() <= 1.0
    assert heard[400:500].min() == 1.0 and np.allclose(heard[1000:], audio[1000:], atol=1e-6)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_a_network_input_that_stalls_without_hanging_up_goes_down_and_comes_back(http_audio, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "NETWORK_STALL", 1.0)
    server = http_audio(tmp_path)
    radio = sources.open_source(parse_source(f"radio=ffmpeg:{server.url}/live.wav"), 10.0)
    assert radio.stall_s == 1.0 and radio.live is False
    done = threading.Event()

    def read() -> None:  # as the worker would: an ffmpeg source waits for room in its ring
        while not done.wait(0.05):
            radio.ring.read()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    children = live_children()
    try:
        radio.start()
        assert until(lambda: radio.ring.written > 0, 30), "no audio from the live stream"
        assert list(radio.changes) == [("running", "audio flowing")]
        # no stated duration or length: it comes at the sender's pace, and is live from its first audio
        assert radio.realtime and radio.live and not radio.ring.blocking
        server.stall()  # the connection stays open; nothing comes
        assert until(lambda: len(radio.changes) >= 2, 10)
        assert radio.changes[1] == ("down", "ffmpeg exited (no audio for 1 s)") and radio.state == "restarting"
        server.resume()
        assert until(lambda: len(radio.changes) >= 3, 30)
        state, reason = radio.changes[2]
        assert state == "up" and reason.startswith("audio back after ") and radio.state == "running"
        assert radio.restarts >= 1 and radio.ring.breaks == radio.restarts and server.connections >= 2
    finally:
        radio.stop()
        done.set()
        reader.join()
    assert live_children().items() <= children.items()  # no ffmpeg child left behind


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_a_network_stream_goes_down_and_comes_back_when_the_pipe_reader_dies(http_audio, tmp_path):
    """The pipe reader killed under a live stream: its ffmpeg goes too (an outage, ``down``), and the
    restarted child's pipe starts a new reader, which takes the same ring on (``up``)."""
    if not sources.READER.available():
        pytest.skip("no memfd here: pipes are read in a thread")
    server = http_audio(tmp_path)
    radio = sources.open_source(parse_source(f"radio=ffmpeg:{server.url}/live.wav"), 10.0)
    done = threading.Event()

    def read() -> None:  # as the worker would
        while not done.wait(0.05):
            radio.ring.read()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        radio.start()
        assert until(lambda: radio.live and radio.ring.written > 0, 30), "no audio from the live stream"
        pid = sources.READER.pid
        os.kill(pid, signal.SIGKILL)
        assert until(lambda: len(radio.changes) >= 3, 30), list(radio.changes)
        state, reason = radio.changes[1]  # killed, or gone by itself at the broken pipe
        assert state == "down" and reason.startswith("ffmpeg exited (code "), reason
        assert radio.changes[2][0] == "up" and radio.state == "running"
        assert sources.READER.pid not in (None, pid) and radio.ring.breaks == radio.restarts == 1
        written = radio.ring.written
        assert until(lambda: radio.ring.written > written + radio.rate // 2, 10)  # the new reader fills it
    finally:
        radio.stop()
        done.set()
        reader.join()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_sources_stopped_together_end_every_thread_and_child(http_audio, tmp_path, monkeypatch):
    """``stop_sources``: twelve network sources, each with its ffmpeg child, are all told to stop before
    any is waited for; every thread ends, every child is reaped and every ring is closed within the
    shared wait (one after another, each took about a tenth of a second or more to wind down)."""
    calls = []
    for name in ("request_stop", "join"):
        real = getattr(sources.FfmpegSource, name)
        monkeypatch.setattr(sources.FfmpegSource, name,
                            lambda src, *a, _real=real, _name=name: (calls.append(_name), _real(src, *a))[1])
    server = http_audio(tmp_path)
    children = live_children()
    srcs = [sources.open_source(parse_source(f"r{i}=ffmpeg:{server.url}/live.wav"), 10.0) for i in range(12)]
    done = threading.Event()

    def read() -> None:  # as the worker would
        while not done.wait(0.05):
            for src in srcs:
                src.ring.read()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for src in srcs:
            src.start()
        assert until(lambda: all(src.ring.written > 0 for src in srcs), 30), "not every stream delivered"
        t0 = time.monotonic()
        sources.stop_sources(srcs)
        took = time.monotonic() - t0
    finally:
        done.set()
        reader.join()
    assert calls == ["request_stop"] * 12 + ["join"] * 12  # all told first, then all awaited
    assert took < sources.STOP_ALL_S
    assert not any(src._thread.is_alive() for src in srcs)
    assert all(src.ring.closed for src in srcs)
    assert live_children().items() <= children.items()  # no ffmpeg child left behind


class _Stubborn(sources._ChildSource):
    """A child that writes silence and ignores SIGTERM, as ffmpeg 7 does while it reads a live network stream."""

    what = "stubborn child"

    def command(self) -> list[str]:
        return [sys.executable, "-c", "import signal, sys, time\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "while True:\n    sys.stdout.buffer.write(bytes(4 * 2205)); sys.stdout.flush(); time.sleep(0.05)"]


def test_a_child_that_ignores_sigterm_is_killed_when_its_source_stops():
    """Stopping asks a child source's process to exit, and kills it past a grace period: a daemon with
    network sources read by ffmpeg 7 took the whole wait for every source (5 s) to stop."""
    src = _Stubborn(SourceSpec("stub", "mic"), SR, 10.0)
    src.start()
    assert until(lambda: src.ring.written > 0, 10), "no audio from the child"
    pid = src._child.pid
    t0 = time.monotonic()
    sources.stop_sources([src])
    took = time.monotonic() - t0
    assert took < sources.STOP_GRACE_S + 1.0, took
    assert pid not in live_children() and src._child.poll() is not None
    assert not src._thread.is_alive() and src.ring.closed


def test_many_children_that_ignore_sigterm_are_killed_together_when_their_sources_stop(pipes):
    """Sixty such children, their pipes read by the pipe reader (or the hub): all are killed once the
    grace they share has passed, not each after the thread of the one before has ended (a thousand
    ffmpeg 7 sources took the whole wait, 5 s, while their audio piled up unread)."""
    srcs = [_Stubborn(SourceSpec(f"stub{i}", "mic"), SR, 10.0) for i in range(60)]
    for src in srcs:
        if pipes == "process":
            sources.READER.share(src)
            src.shared = True
        src.start()
    assert until(lambda: all(src.ring.written > 0 for src in srcs), 30), "not every child delivered"
    t0 = time.monotonic()
    sources.stop_sources(srcs)
    took = time.monotonic() - t0
    assert took < sources.STOP_GRACE_S + 1.0, took
    assert all(src._child.poll() is not None and not src._thread.is_alive() for src in srcs)


def _ffmpeg_major() -> int:
    """The installed ffmpeg's major version (0 when it does not say)."""
    out = subprocess.run([shutil.which("ffmpeg"), "-version"], capture_output=True, text=True, timeout=30).stdout
    found = re.match(r"ffmpeg version n?(\d+)\.", out)
    return int(found.group(1)) if found else 0


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
@pytest.mark.parametrize("pipes,many,most,least", [("process", 100, 80, 28), ("thread", 0, 26, 14)],
                         ids=["reader-20ms-rounds", "hub-100ms-rounds"])
def test_the_pipe_readers_read_a_live_stream_once_a_round(http_audio, tmp_path, monkeypatch, pipes, many, most,
                                                          least):
    """A live stream's audio reaches its ring a round at a time: with every chunk the server sends
    (50 ms) while the pipe reader reads every 20 ms, about every 100 ms when the daemon's hub thread
    reads past ``HUB_MANY`` pipes (a thousand pipes read every 20 ms took 50,000 reads a second). Counted
    as distinct arrival times over 2 s. ffmpeg 7 writes what it decodes in blocks of about 85 ms,
    50-100 ms apart (5.1: as the server sends it), so with 20 ms rounds the ring cannot see more than
    about 24 writes in 2 s there."""
    if pipes == "process" and not sources.READER.available():
        pytest.skip("no memfd here: pipes are read in a thread")
    if pipes == "thread":
        monkeypatch.setattr(sources.READER, "available", lambda: False)
    if many and _ffmpeg_major() >= 7:
        least = 20
    monkeypatch.setattr(sources, "HUB_MANY", many)
    server = http_audio(tmp_path)
    radio = sources.open_source(parse_source(f"radio=ffmpeg:{server.url}/live.wav"), 10.0)
    try:
        radio.start()
        assert until(lambda: radio.ring.written > 0, 30), "no audio"
        time.sleep(3.0)  # past the burst of what ffmpeg read before its first output
        end = radio.ring.written
        writes = {radio.ring.arrival(i) for i in range(end - 2 * radio.rate, end, radio.rate // 400)}
    finally:
        radio.stop()
    assert least <= len(writes) <= most, len(writes)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_a_live_network_stream_read_too_slowly_drops_its_oldest_audio_and_counts_it(http_audio, tmp_path):
    """Nobody reads the ring of a live network stream for longer than it holds (``ring_seconds``, as for
    any live source): its oldest audio is dropped and counted, and the stream keeps flowing (no stall,
    no restart), where a backpressured one would hold the sender back."""
    server = http_audio(tmp_path)
    radio = sources.open_source(parse_source(f"radio=ffmpeg:{server.url}/live.wav"), 4.0)
    try:
        radio.start()
        assert until(lambda: radio.live, 30), "the stream never went live"
        capacity_s = radio.ring.capacity / radio.rate
        assert capacity_s == 4.0
        assert until(lambda: radio.ring.dropped > 0, capacity_s + 10), "nothing dropped from a full live ring"
        written = radio.ring.written
        assert until(lambda: radio.ring.written > written + radio.rate // 2, 5)  # still flowing
        assert radio.restarts == 0 and radio.state == "running"
    finally:
        radio.stop()

