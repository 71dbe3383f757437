"""Client fixtures: a program of real fluidsynth renders for a served daemon (tests/conftest.py) to play,
a checkpoint fitted to it, a folder of clips to classify, a JACK server as a sound card, and what a
daemon publishes without audio."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from ..conftest import free_port, start_jackd

SR = 44100


def wait_for(predicate, timeout: float, what: str):
    """Poll ``predicate()`` every 0.1 s until it returns something true; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="session")
def program(tmp_path_factory, renders) -> Path:
    """A 60 s WAV of real renders: flute, piano, violin, the flute-and-piano mix, over and over."""
    one = np.concatenate([renders["flute"], renders["piano"], renders["violin"], renders["mix"]])
    path = tmp_path_factory.mktemp("program") / "program.wav"
    soundfile.write(path, np.tile(one, 5), SR, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def fitted(tmp_path_factory, renders):
    """A checkpoint of the network fitted to call this flute render ``flu`` and this violin render ``vio``."""
    from instrumentd.model.checkpoint import save
    from instrumentd.model.classes import CLASSES
    from instrumentd.model.networks import build
    from instrumentd.pipeline import DEFAULT, FeatureExtractor

    feats = FeatureExtractor(DEFAULT)(np.stack([renders["flute"], renders["violin"]]))
    target = torch.tensor([CLASSES.index("flu"), CLASSES.index("vio")])
    torch.manual_seed(0)
    model = build("cross")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(20):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(feats.mel, feats.mask), target)
        loss.backward()
        opt.step()
    assert loss.item() < 0.01
    for m in model.modules():  # batch-norm statistics of the fitted network, for inference
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model(feats.mel, feats.mask)
    path = tmp_path_factory.mktemp("ckpt") / "flute-violin.safetensors"
    save(path, model.eval(), "cross", DEFAULT, trained=True)
    return path


@pytest.fixture(scope="session")
def clips(tmp_path_factory, renders) -> Path:
    """An IRMAS-test-like folder: two clips of different lengths with .txt labels beside them."""
    root = tmp_path_factory.mktemp("irmas") / "IRMAS-TestingData-Part1" / "Part1"
    root.mkdir(parents=True)
    long = np.concatenate([renders["mix"], renders["violin"]])  # 6 s
    soundfile.write(root / "a song-1.wav", np.stack([long, long], 1), SR)
    (root / "a song-1.txt").write_text("flu\t\npia\t\nvio\t\n")
    soundfile.write(root / "b.flac", renders["flute"][:SR], SR)  # 1 s: shorter than one window
    return root


@pytest.fixture
def jack_env():
    """The environment of a process whose PortAudio sees a JACK server on the dummy driver (input "system",
    2 channels, 44.1 kHz), started for the test and stopped after it."""
    name = f"instrumentd-devices-{os.getpid()}-{free_port()}"
    jack = start_jackd(name)
    try:
        yield {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1"}
    finally:
        jack.terminate()
        jack.wait(10)


class Publishing:
    """What a daemon serves, without audio: a real ZeroMQ PUB and a replay endpoint over a real event
    log, on free loopback ports. Events are built with the daemon's own builders, logged, then sent."""

    def __init__(self, tmp_path: Path):
        import threading

        from instrumentd.daemon.eventlog import EventLog
        from instrumentd.daemon.publisher import Publisher

        self.pub = f"tcp://127.0.0.1:{free_port()}"
        self.replay = f"tcp://127.0.0.1:{free_port()}"
        self.publisher = Publisher(self.pub)
        self.log = EventLog(tmp_path / f"log-{free_port()}")
        self._stop = threading.Event()
        self._replay_thread = threading.Thread(target=self._serve_replay, daemon=True)
        self._replay_thread.start()

    def _serve_replay(self) -> None:
        from instrumentd.daemon.replay import ReplayServer

        server = ReplayServer(self.replay, self.log)
        while not self._stop.wait(0.01):
            server.serve_pending()
        server.close()

    def wait_subscribers(self, n: int = 1, timeout: float = 30.0) -> None:
        def enough():
            self.publisher.poll_subscriptions()
            return self.publisher.subscriptions >= n

        wait_for(enough, timeout, f"{n} subscriber(s) on {self.pub}")
        time.sleep(0.2)  # a subscriber's remaining topic prefixes arrive right after the first

    def _next_seq(self, stream: str) -> int:
        try:
            return self.log.next_seq(stream)
        except KeyError:
            return self.log.open_stream(stream)

    def window(self, stream: str, top: str, p_top: float = 0.9, labels: tuple[str, ...] = (),
               level_db: float | None = -20.0, send: bool = True) -> dict:
        """Log a window event whose ``top`` has ``p_top`` (the rest shared evenly) and, if ``send``, publish it."""
        from instrumentd.daemon.events import window_event
        from instrumentd.model.classes import CLASSES

        probs = [(1 - p_top) / (len(CLASSES) - 1)] * len(CLASSES)
        probs[CLASSES.index(top)] = p_top
        seq = self._next_seq(stream)
        event = window_event(stream, seq, seq * 0.5, seq * 0.5 + 3.0, time.time(), probs, CLASSES, list(labels),
                             20.0, "cross-test", True, level_db)
        return self._out(event, send)

    def segment(self, stream: str, instrument: str, state: str, send: bool = True) -> dict:
        from instrumentd.daemon.events import segment_event

        seq = self._next_seq(stream)
        end = None if state == "start" else seq * 0.5 + 3.0
        event = segment_event(stream, seq, instrument, state, seq * 0.5, end, None if state == "start" else "change",
                              time.time(), "cross-test")
        return self._out(event, send)

    def status(self, states: dict[str, str]) -> dict:
        """Publish a heartbeat whose streams have these source states (and their last logged seqs)."""
        from instrumentd.daemon.events import status_event

        streams = {name: {"source": f"{name}=file:x.wav", "state": state, "level_db": -20.0, "windows": 1,
                          "drops": {"audio_s": 0.0, "windows": 0}, "queue_s": 0.0,
                          "latency_ms": {"p50": 20.0, "p99": 30.0}, "restarts": 0, "seq": self._next_seq(name) - 1}
                   for name, state in states.items()}
        event = status_event(time.time(), 1.0, "cpu", "cross-test", True, 0, streams)
        self.publisher.publish(event)
        return event

    def _out(self, event: dict, send: bool) -> dict:
        self.log.append(event)
        if send:
            self.publisher.publish(event)
        return event

    def close(self) -> None:
        self._stop.set()
        self._replay_thread.join(5)
        self.publisher.close()
        self.log.close()


@pytest.fixture
def publishing(tmp_path):
    """A :class:`Publishing` for the test, closed at its end."""
    p = Publishing(tmp_path)
    yield p
    p.close()
