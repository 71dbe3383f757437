"""Replay: a real ROUTER endpoint over a real event log on loopback; pages, the stream list, limits, bad
requests, and which daemon owns a stream when several list it."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import zmq

from instrumentd.daemon import events
from instrumentd.daemon.eventlog import EventLog
from instrumentd.daemon.events import EventError, window_event
from instrumentd.daemon.replay import (MAX_REQUEST_BYTES, MAX_REQUEST_DEPTH, ReplayServer, list_streams, merge_streams,
                                       replay)
from instrumentd.model.classes import CLASSES

from ..conftest import free_port, loopback


def test_the_newer_log_owns_a_stream_two_daemons_list():
    streams: dict[str, int] = {}
    owners: dict[str, str] = {}
    merge_streams(streams, owners, {"a": 4, "b": 9}, "one")
    merge_streams(streams, owners, {"a": 7, "b": 2, "c": 0, "bad": "x", 5: 1}, "two")
    assert streams == {"a": 7, "b": 9, "c": 0}
    assert owners == {"a": "two", "b": "one", "c": "two"}
    merge_streams(streams, owners, None, "three")  # an answer without a list changes nothing
    assert owners == {"a": "two", "b": "one", "c": "two"}


def test_list_streams_asks_a_real_endpoint_and_names_one_that_is_silent(tmp_path):
    log = EventLog(tmp_path)
    for name, n in (("x", 3), ("y", 1)):
        first = log.open_stream(name)
        for i in range(n):
            log.append(window_event(name, first + i, i, i + 3.0, time.time(), np.full(11, 1 / 11), CLASSES, [],
                                    5.0, "m", False))
    server = ReplayServer("inproc://replay-test-list", log)
    server.start()
    silent = zmq.Context.instance().socket(zmq.ROUTER)
    silent.bind("inproc://replay-test-silent")
    try:
        assert list_streams("inproc://replay-test-list") == {"x": 2, "y": 0}
        with pytest.raises(TimeoutError, match="replay-test-silent within 0.2 s"):
            list_streams("inproc://replay-test-silent", timeout=0.2)
    finally:
        silent.close(0)
        server.close()
        log.close()


def win(stream: str, seq: int) -> dict:
    return events.window_event(stream, seq, seq, seq + 3.0, 1.7e9, np.full(11, 1 / 11), CLASSES, [], 5.0, "m", False)


def written(folder, streams: dict[str, int]) -> EventLog:
    """An event log in ``folder`` holding ``n`` window events (seq 0..n-1) of each stream."""
    log = EventLog(folder)
    for stream, n in streams.items():
        log.open_stream(stream)
        for i in range(n):
            log.append(win(stream, i))
    return log


def test_replay_serves_pages_and_names_bad_requests(tmp_path):
    log = EventLog(tmp_path)
    log.open_stream("s")
    for i in range(2500):
        log.append(win("s", i))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = ReplayServer(endpoint, log)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            if server.socket.poll(20):
                server.serve_pending()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        got = [e["seq"] for e in replay(endpoint, "s", 1200)]
        assert got == list(range(1200, 2500))  # two pages of 1000 and 300
        assert list(replay(endpoint, "s", 2500)) == []
        assert list(replay(endpoint, "nobody", 0)) == []
        with pytest.raises(EventError, match="from_seq must be a non-negative integer, got -3"):
            list(replay(endpoint, "s", -3))
        with pytest.raises(EventError, match="stream name '../s'"):
            list(replay(endpoint, "../s", 0))
        req = zmq.Context.instance().socket(zmq.REQ)
        req.connect(endpoint)
        req.send(b"{}")
        assert json.loads(req.recv()) == {"schema": 1, "streams": {"s": 2499}}
        req.send(b"not json")
        assert "error" in json.loads(req.recv())
        req.close(0)
    finally:
        stop.set()
        thread.join()
        server.close()


def test_answers_name_the_page_and_where_to_ask_next(tmp_path):
    server = ReplayServer(loopback(), written(tmp_path, {"a": 5, "b": 2}))
    try:
        assert server.answer(b"{}") == {"schema": 1, "streams": {"a": 4, "b": 1}}
        page = server.answer(b'{"stream": "a", "from_seq": 1, "limit": 2}')
        assert [e["seq"] for e in page["events"]] == [1, 2] and (page["next_seq"], page["last_seq"]) == (3, 4)
        done = server.answer(b'{"stream": "a", "from_seq": 9}')
        assert done["events"] == [] and done["next_seq"] == 9 and done["last_seq"] == 4
    finally:
        server.close()


@pytest.mark.parametrize("body, fragment", [
    (b"[1]", "must be a JSON object"),
    (b'{"stream": 3}', "stream must be a name, got 3"),
    (b'{"stream": "a", "limit": 0}', "limit must be a positive integer, got 0"),
    (b'{"stream": "a", "from_seq": true}', "from_seq must be a non-negative integer, got True"),
    (b" " * (MAX_REQUEST_BYTES + 1), f"at most {MAX_REQUEST_BYTES}"),
    (b"[" * (MAX_REQUEST_DEPTH + 1), f"more than {MAX_REQUEST_DEPTH} deep"),
])
def test_a_bad_request_gets_an_error_naming_it(tmp_path, body, fragment):
    server = ReplayServer(loopback(), written(tmp_path, {"a": 1}))
    try:
        answer = server.answer(body)
        assert set(answer) == {"schema", "error"} and fragment in answer["error"]
    finally:
        server.close()


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path):
    server = ReplayServer(loopback(), written(tmp_path, {"a": 1}))
    try:
        answer = server.answer(b'{"stream": "[[[[[[{{{{{"}')
        assert "nested" not in answer["error"] and "stream name '[[[[[[{{{{{'" in answer["error"]
    finally:
        server.close()


def test_a_started_server_answers_on_its_thread_until_closed(tmp_path):
    endpoint = loopback()
    server = ReplayServer(endpoint, tmp_path / "log")
    written(tmp_path / "log", {"a": 3})
    server.start()
    try:
        assert [e["seq"] for e in replay(endpoint, "a")] == [0, 1, 2]
    finally:
        server.close()
    assert not any(t.name == "replay" for t in threading.enumerate())


def test_nobody_answering_is_a_timeout_naming_the_endpoint():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(TimeoutError, match=f"{endpoint} within 0.2 s"):
        list(replay(endpoint, "a", timeout=0.2))
