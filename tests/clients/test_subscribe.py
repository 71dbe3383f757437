"""What every subscriber shares, against a real PUB socket and replay endpoint on loopback: topic prefixes,
seq gaps noticed and filled in order, duplicates dropped, bad messages skipped, endpoints checked."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

import pytest

from instrumentd.clients.subscribe import Feed, Gaps, Replayer, check_endpoint, topic_prefixes
from instrumentd.pipeline.errors import ParameterError

from ..conftest import loopback


@contextlib.contextmanager
def subscribed(publishing, topics: list[str], streams: list[str] | None = None,
               replayer: Replayer | None = None) -> Iterator[Feed]:
    """A ``tail`` Feed of ``publishing``'s PUB socket, once the publisher sees it subscribed; closed afterwards."""
    feed = Feed([publishing.pub], topics, streams, replayer, "tail")
    try:
        publishing.wait_subscribers()
        yield feed
    finally:
        feed.close()


def collect(feed: Feed, n: int, timeout_s: float = 10.0) -> list[dict]:
    """The next ``n`` events out of ``feed``; fails after ``timeout_s`` s without them."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n:
        assert time.monotonic() < deadline, f"only {len(got)} of {n} events: {got}"
        got += feed.next(0.2)
    return got


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:5555", "ipc:///run/x.sock", "inproc://events"])
def test_good_endpoints_pass(endpoint):
    assert check_endpoint(endpoint, "--connect") == endpoint


@pytest.mark.parametrize("endpoint", ["127.0.0.1:5555", "udp://127.0.0.1:1", "tcp://"])
def test_bad_endpoints_name_the_flag_and_the_value(endpoint):
    with pytest.raises(ParameterError, match=f"--connect '{endpoint}' is not tcp://HOST:PORT"):
        check_endpoint(endpoint, "--connect")


def test_topic_prefixes_narrow_to_streams_but_status_is_one():
    assert topic_prefixes(["window", "status"], None) == ["window.", "status"]
    assert topic_prefixes(["window", "segment", "status"], ["a", "b"]) == ["window.a", "window.b", "segment.a",
                                                                           "segment.b", "status"]


def test_gaps_name_the_missed_range_and_old_events():
    gaps = Gaps()
    assert gaps.seen({"stream": "a", "seq": 5}) is None  # the first of a stream: nothing missed before it
    assert gaps.seen({"stream": "a", "seq": 6}) is None
    assert gaps.seen({"stream": "a", "seq": 9}) == (7, 9)
    assert gaps.seen({"stream": "a", "seq": 8}) == "old"
    assert gaps.seen({"stream": "b", "seq": 0}) is None
    assert Gaps({"a": 3}).seen({"stream": "a", "seq": 4}) == (3, 4)


def test_a_gap_is_filled_from_replay_before_the_event_that_revealed_it(publishing):
    with subscribed(publishing, ["window"], replayer=Replayer([publishing.replay])) as feed:
        publishing.window("radio", "flu")  # seq 0
        publishing.window("radio", "flu", send=False)  # 1 and 2: logged, never received
        publishing.window("radio", "vio", send=False)
        publishing.window("radio", "vio")  # 3
        got = collect(feed, 4)
        assert [e["seq"] for e in got] == [0, 1, 2, 3] and got[2]["top"] == "vio"


def test_without_a_replayer_a_gap_is_one_line_on_stderr(publishing, capsys):
    with subscribed(publishing, ["window"]) as feed:
        publishing.window("radio", "flu")
        publishing.window("radio", "flu", send=False)
        publishing.window("radio", "flu")
        assert [e["seq"] for e in collect(feed, 2)] == [0, 2]
        assert capsys.readouterr().err == ("instrumentd tail: stream radio: missed seq 1-1 "
                                          "(no --replay endpoint to fill it from)\n")


def test_only_the_streams_and_kinds_asked_for_come_out(publishing):
    with subscribed(publishing, ["segment"], streams=["radio"], replayer=Replayer([publishing.replay])) as feed:
        publishing.window("radio2", "flu")  # another stream whose name starts the same
        publishing.window("radio", "flu")  # a kind not asked for, but it shares the stream's seq: no false gap
        publishing.segment("radio", "flu", "start")
        got = collect(feed, 1)
        assert [(e["type"], e["stream"], e["seq"]) for e in got] == [("segment", "radio", 1)]


def test_a_bad_message_is_skipped_with_a_line_on_stderr(publishing, capsys):
    with subscribed(publishing, ["window"]) as feed:
        publishing.publisher.socket.send_multipart([b"window.x", b"not json"])
        assert feed.next(5.0) == []
        assert capsys.readouterr().err.startswith("instrumentd tail: skipping a bad event on b'window.x': ")
        publishing.window("x", "pia")
        assert [e["top"] for e in collect(feed, 1)] == ["pia"]


def test_a_stream_no_endpoint_serves_is_a_timeout_naming_them(publishing):
    publishing.window("radio", "flu")
    nobody = loopback()
    replayer = Replayer([nobody, publishing.replay], timeout_s=0.3)
    assert [e["seq"] for e in replayer.fetch("radio", 0, 1)] == [0]
    with pytest.raises(TimeoutError, match=f"no replay endpoint \\({nobody}, {publishing.replay}\\) serves stream 'tv'"):
        replayer.fetch("tv", 0, 5)
