"""Replay clients: the stream list of one endpoint, and which daemon owns a stream when several list it."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from instrumentd.daemon.eventlog import EventLog
from instrumentd.daemon.events import window_event
from instrumentd.daemon.replay import ReplayServer, list_streams, merge_streams
from instrumentd.model.classes import CLASSES


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
