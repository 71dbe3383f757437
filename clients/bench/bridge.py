"""``instrumentd bench bridge``: the latency a bridge adds, from a daemon's publish to the MQTT
broker's delivery or the OSC packet, on loopback.

This process publishes window events on a real ZeroMQ PUB (the daemon's :class:`Publisher`) at
:data:`RATE` events per second, spread over :data:`STREAMS` streams; ``instrumentd bridge mqtt``
(to a ``mosquitto`` started here) and ``instrumentd bridge osc`` run as their own processes, as
users run them. A paho subscriber on the broker and a UDP socket for the OSC packets stamp each
arrival; latency is arrival minus the moment just before the publish, on the same clock. An OSC
window is timed at its last packet (``/voi``, whose value carries the event's number).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import numpy as np

from . import BenchResult

RATE = 1000  # window events per second, over all streams
STREAMS = 4
SECONDS = 10.0  # of events per bridge (--quick: QUICK_SECONDS)
QUICK_SECONDS = 3.0
DRAIN_S = 3.0  # how long late arrivals are waited for after the last publish
READY_TIMEOUT_S = 60.0  # for a bridge process to start and pass a first event through
VOI_SCALE = 1e-5  # event number i is sent as p(voi) = i * VOI_SCALE: exact in float32 up to 10^6 events


def bridge(device: Any, quick: bool, args: argparse.Namespace) -> BenchResult:
    from instrumentd.pipeline.errors import InstrumentdError

    if shutil.which("mosquitto") is None:
        raise InstrumentdError("bench bridge needs the mosquitto broker (apt-get install mosquitto)")
    n = int(RATE * (QUICK_SECONDS if quick else SECONDS))
    rows = [_measure("mqtt", n, _with_mqtt), _measure("osc", n, _with_osc)]
    # the tail depends on what else the CPUs run: the load average goes with the figures
    summary: dict[str, Any] = {"rate_per_s": RATE, "events": n, "streams": STREAMS, "target_p99_ms": 5.0,
                               "load_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    for row in rows:
        for key in ("p50_ms", "p99_ms", "max_ms", "lost"):
            summary[f"{row['bridge']}_{key}"] = row[key]
    return BenchResult("Bridge latency, daemon publish -> delivery on loopback", rows, summary)


def _events(n: int) -> list[dict[str, Any]]:
    """``n`` window events over :data:`STREAMS` streams, the i-th with p(voi) = i * VOI_SCALE."""
    from instrumentd.daemon.events import window_event
    from instrumentd.model.classes import CLASSES

    rng = np.random.default_rng(0)
    out, seq = [], [0] * STREAMS
    for i in range(n):
        s = i % STREAMS
        p = rng.dirichlet(np.ones(len(CLASSES)))
        p[-1] = i * VOI_SCALE
        top = CLASSES[int(np.argmax(p))]
        out.append(window_event(f"s{s}", seq[s], seq[s] * 0.5, seq[s] * 0.5 + 3.0, time.time(), p, CLASSES,
                                [top], 30.0, "bench", True, -20.0))
        seq[s] += 1
    return out


def _measure(kind: str, n: int, harness: Callable) -> dict[str, Any]:
    from instrumentd.daemon.publisher import Publisher

    events = _events(n + 1)  # the first is the warm-up
    pub = f"tcp://127.0.0.1:{_free_port()}"
    publisher = Publisher(pub, sndhwm=100000)
    arrivals: dict[int, float] = {}
    sent = np.zeros(n + 1)
    with harness(pub, arrivals) as ready:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while 0 not in arrivals:  # the bridge is up and subscribed once a first event goes through
            if time.monotonic() > deadline or not ready():
                raise RuntimeError(f"bridge {kind} did not pass an event through within {READY_TIMEOUT_S:g} s")
            publisher.publish(events[0])
            time.sleep(0.05)
        t0 = time.perf_counter() + 0.1
        for i in range(1, n + 1):
            wait = t0 + i / RATE - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            sent[i] = time.perf_counter()
            publisher.publish(events[i])
        end = time.monotonic() + DRAIN_S
        while len(arrivals) < n + 1 and time.monotonic() < end:
            time.sleep(0.05)
    publisher.close()
    got = np.array([arrivals[i] - sent[i] for i in range(1, n + 1) if i in arrivals]) * 1000
    return {"bridge": kind, "events": n, "rate_per_s": RATE, "received": len(got),
            "p50_ms": round(float(np.percentile(got, 50)), 3), "p99_ms": round(float(np.percentile(got, 99)), 3),
            "max_ms": round(float(got.max()), 3), "lost": n - len(got)}


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bridge_process(kind: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "instrumentd", "bridge", kind, *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class _with_mqtt:
    """mosquitto, ``bridge mqtt`` and a paho subscriber to ``instrumentd/+/window``, for a ``with`` block."""

    def __init__(self, pub: str, arrivals: dict[int, float]):
        self.pub, self.arrivals = pub, arrivals

    def __enter__(self) -> Callable[[], bool]:
        import paho.mqtt.client as mqtt

        port = _free_port()
        self.broker = subprocess.Popen(["mosquitto", "-p", str(port)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *a: c.subscribe("instrumentd/+/window")
        self.client.on_message = self._arrived
        for _ in range(100):
            try:
                self.client.connect("127.0.0.1", port)
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
        self.client.loop_start()
        self.bridge = _bridge_process("mqtt", "--connect", self.pub, "--broker", f"mqtt://127.0.0.1:{port}")
        return lambda: self.bridge.poll() is None and self.broker.poll() is None

    def _arrived(self, client: Any, userdata: Any, message: Any) -> None:
        t = time.perf_counter()
        self.arrivals[round(json.loads(message.payload)["probabilities"]["voi"] / VOI_SCALE)] = t

    def __exit__(self, *exc: Any) -> None:
        self.bridge.terminate()
        self.bridge.wait(10)
        self.client.disconnect()
        self.client.loop_stop()
        self.broker.terminate()
        self.broker.wait(10)


class _with_osc:
    """``bridge osc`` to a UDP socket read by a thread here, for a ``with`` block."""

    def __init__(self, pub: str, arrivals: dict[int, float]):
        self.pub, self.arrivals = pub, arrivals
        self.stop = threading.Event()

    def __enter__(self) -> Callable[[], bool]:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 2**20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        port = self.sock.getsockname()[1]
        self.bridge = _bridge_process("osc", "--connect", self.pub, "--osc", f"udp://127.0.0.1:{port}")
        return lambda: self.bridge.poll() is None

    def _read(self) -> None:
        """Stamp each ``/voi`` packet as it comes; decode the warm-up's at once, the others once the run is over."""
        from pythonosc.osc_message import OscMessage

        packets = []
        while not self.stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if b"/voi\x00" in data:
                packets.append((time.perf_counter(), data))
                if 0 not in self.arrivals and round(OscMessage(data).params[0] / VOI_SCALE) == 0:
                    self.arrivals[0] = packets[-1][0]
        self.packets = packets

    def __exit__(self, *exc: Any) -> None:
        self.bridge.terminate()
        self.bridge.wait(10)
        self.stop.set()
        self.thread.join(5)
        self.sock.close()
        from pythonosc.osc_message import OscMessage

        for t, data in self.packets:
            self.arrivals[round(OscMessage(data).params[0] / VOI_SCALE)] = t
