import json
import time

import numpy as np
import pytest
import zmq

from instrumentd.daemon import events
from instrumentd.daemon.publisher import EndpointError, Publisher
from instrumentd.model.classes import CLASSES

from ..conftest import free_port


def win(stream: str, seq: int) -> dict:
    return events.window_event(stream, seq, seq, seq + 3.0, 1.7e9, np.full(11, 1 / 11), CLASSES, [], 5.0, "m", False)


def test_a_stalled_subscriber_never_blocks_the_publisher_and_drops_are_counted():
    ctx = zmq.Context()
    pub = Publisher("inproc://events", sndhwm=5, context=ctx)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 5)
    sub.setsockopt(zmq.SUBSCRIBE, b"window.")
    sub.connect("inproc://events")
    time.sleep(0.1)
    pub.poll_subscriptions()
    assert pub.subscriptions == 1
    t0 = time.monotonic()
    sent = [pub.publish(win("s", i)) for i in range(200)]
    assert time.monotonic() - t0 < 1.0
    assert pub.drops == sent.count(False) >= 1 and pub.sent == sent.count(True) >= 5  # an overflow is counted
    first = json.loads(sub.recv_multipart()[1])
    assert first["seq"] == 0
    while sub.poll(50):
        sub.recv_multipart()
    assert pub.publish(win("s", 200))  # room again once the subscriber reads
    sub.close(0)
    pub.socket.close(0)
    ctx.term()


def test_binding_a_taken_endpoint_is_a_one_line_error():
    port = free_port()
    first = Publisher(f"tcp://127.0.0.1:{port}")
    with pytest.raises(EndpointError, match=f"tcp://127.0.0.1:{port}.*--pub"):
        Publisher(f"tcp://127.0.0.1:{port}")
    first.socket.close(0)


def test_the_first_event_can_wait_for_a_subscriber_that_is_connecting():
    ctx = zmq.Context()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(endpoint, context=ctx)
    try:
        t0 = time.monotonic()
        assert not pub.wait_for_subscriber(0.2) and time.monotonic() - t0 >= 0.2  # nobody: it gives up
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(endpoint)
        assert pub.wait_for_subscriber(10.0) and pub.subscriptions == 1
        pub.publish(win("s", 0))  # sent once the subscription is in: the subscriber gets it
        assert sub.poll(5000) and events.decode(sub.recv_multipart()[1])["seq"] == 0
        sub.close(0)
    finally:
        pub.socket.close(0)
        ctx.term()
