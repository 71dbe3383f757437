"""Sources on their own: an ``ffmpeg:`` network input that stalls is an outage, noted ``down`` then ``up``;
paced files share one pacer thread and child sources one pipe reader, each delivering all its audio."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest
import soundfile

from instrumentd.daemon import sources
from instrumentd.daemon.config import parse_source

from ..conftest import live_children, until
from .conftest import SR, melody


def _threads(name: str) -> int:
    return sum(t.name == name for t in threading.enumerate())


def _drain(srcs, stop: threading.Event, got: list[int]) -> None:
    """Read the rings as the worker would, counting the samples."""
    while not stop.wait(0.02):
        for i, src in enumerate(srcs):
            got[i] += len(src.ring.read()[0])


def test_paced_files_share_one_thread_and_each_plays_in_real_time_to_its_end(tmp_path):
    path = tmp_path / "one.wav"
    soundfile.write(path, melody(1.2), SR, subtype="PCM_16")
    srcs = [sources.open_source(parse_source(f"f{i}=file:{path}"), 10.0) for i in range(8)]
    stop, got = threading.Event(), [0] * len(srcs)
    reader = threading.Thread(target=_drain, args=(srcs, stop, got), daemon=True)
    reader.start()
    t0 = time.monotonic()
    for src in srcs:
        src.start()
    try:
        assert _threads("source-pacer") == 1 and not any(t.name.startswith("source-f") for t in threading.enumerate())
        assert until(lambda: all(src.ended for src in srcs), 10)
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        reader.join()
    assert elapsed >= 1.2 - 0.03  # paced: not faster than the file lasts (the last block may come a block early)
    assert got == [int(1.2 * SR)] * len(srcs)
    assert all(src.state == "ended" and src.reason == "end of file" for src in srcs)
    assert all(list(src.changes) == [("running", "audio flowing")] for src in srcs)
    assert until(lambda: _threads("source-pacer") == 0, 1)  # no file left: the thread is gone


def test_paced_files_opened_together_start_spread_over_the_hop(tmp_path):
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
    assert [src.ring.written for src in srcs] == [int(0.5 * SR)] * 4


def test_a_paced_file_stopped_midway_ends_and_leaves_the_pacer(tmp_path):
    path = tmp_path / "long.wav"
    soundfile.write(path, melody(30.0), SR, subtype="PCM_16")
    src = sources.open_source(parse_source(f"long=file:{path}"), 10.0)
    src.start()
    assert until(lambda: src.state == "running", 5)
    src.stop()
    assert src.state == "ended" and src.ring.closed
    assert until(lambda: _threads("source-pacer") == 0, 1)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
@pytest.mark.parametrize("many", [100, 1], ids=["20ms-rounds", "100ms-rounds"])
def test_ffmpeg_children_share_one_pipe_reader_and_a_full_ring_loses_nothing(tmp_path, monkeypatch, many):
    """Three local files through ffmpeg, longer than their 5 s rings: read slowly, every sample arrives,
    also when the hub waits 100 ms between rounds (as it does past ``HUB_MANY`` pipes)."""
    monkeypatch.setattr(sources, "HUB_MANY", many)
    path = tmp_path / "clip.flac"
    audio = melody(7.0)[:, 0]
    soundfile.write(path, audio, SR)
    srcs = [sources.open_source(parse_source(f"a{i}=ffmpeg:{path}"), 10.0) for i in range(3)]
    assert all(not src.live and src.ring.capacity < len(audio) for src in srcs)
    for src in srcs:
        src.start()
    assert until(lambda: all(src.ring.room() == 0 for src in srcs), 10)  # full: the children wait
    assert _threads("source-pipes") == 1
    stop, got = threading.Event(), [0] * len(srcs)
    reader = threading.Thread(target=_drain, args=(srcs, stop, got), daemon=True)
    reader.start()
    try:
        assert until(lambda: all(src.ended for src in srcs), 30)
    finally:
        stop.set()
        reader.join()
    assert got == [len(audio)] * len(srcs)
    assert all(src.state == "ended" and src.reason == "end of input" for src in srcs)
    assert not any(src.realtime for src in srcs)  # decoded as fast as they are read
    assert until(lambda: _threads("source-pipes") == 0, 2)


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


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_a_live_network_stream_read_too_slowly_drops_its_oldest_audio_and_counts_it(http_audio, tmp_path):
    """Nobody reads the ring of a live network stream for longer than it holds: its oldest audio is dropped
    and counted, and the stream keeps flowing (no stall, no restart), where a backpressured one would
    hold the sender back."""
    server = http_audio(tmp_path)
    radio = sources.open_source(parse_source(f"radio=ffmpeg:{server.url}/live.wav"), 10.0)
    try:
        radio.start()
        assert until(lambda: radio.live, 30), "the stream never went live"
        capacity_s = radio.ring.capacity / radio.rate
        assert until(lambda: radio.ring.dropped > 0, capacity_s + 10), "nothing dropped from a full live ring"
        written = radio.ring.written
        assert until(lambda: radio.ring.written > written + radio.rate // 2, 5)  # still flowing
        assert radio.restarts == 0 and radio.state == "running"
    finally:
        radio.stop()

