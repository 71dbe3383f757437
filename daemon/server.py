"""``Server(config).run()``: startup -> main_loop -> shutdown.

startup loads the checkpoint, opens the sources, the event log, the publisher and the replay
endpoint; main_loop steps the worker, logs and publishes its events, answers replay requests and
sends a status heartbeat every ``config.heartbeat`` seconds; it ends when a signal sets
:attr:`Server.should_exit` or every source has ended. shutdown stops the sources, finishes the
windows whose audio is already in, publishes them, closes open segments, flushes the log.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

import zmq

from instrumentd.pipeline.errors import ParameterError

from . import events
from .config import Config
from .eventlog import EventLog
from .publisher import Publisher
from .replay import ReplayServer
from .segments import Change, Segmenter
from .security import Guard
from .sources import Source, open_sources
from .worker import Stream, Window, WorkerPool, build_pool, resolve_devices

log = logging.getLogger("instrumentd.daemon")

TICK = 0.005  # seconds the loop waits for replay requests between worker steps
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Server:
    """The daemon. ``run()`` returns the exit code (0 after a signal or when every source ended)."""

    def __init__(self, config: Config):
        self.config = config
        self.should_exit = False
        self.started = time.monotonic()
        self.sources: list[Source] = []
        self.log: EventLog | None = None
        self.publisher: Publisher | None = None
        self.replay: ReplayServer | None = None
        self.worker: WorkerPool | None = None
        self.guard: Guard | None = None
        self._next_seq: dict[str, int] = {}
        self._last_heartbeat = 0.0

    def run(self) -> int:
        self._install_signal_handlers()
        try:
            self.startup()
            self.main_loop()
        finally:
            self.shutdown()
        return 0

    # -- life ------------------------------------------------------------------
    def startup(self) -> None:
        import torch

        cfg = self.config
        specs = cfg.source_specs()
        if not specs:
            raise ParameterError("no sources: give at least one --source [NAME=]SPEC (or 'sources' in the config file)")
        self.guard = Guard(cfg.curve_key, cfg.curve_clients)
        # endpoints first: a taken port fails before the model loads, and subscribers can join
        # during the seconds that loading takes instead of missing the first events
        if cfg.log_dir:
            self.log = EventLog(cfg.log_dir, int(cfg.log_rotate_mb * 2**20))
        context = self.guard.context
        self.publisher = Publisher(cfg.pub, cfg.sndhwm, context)
        if cfg.replay and self.log is not None:
            self.replay = ReplayServer(cfg.replay, self.log, context)
        self.sources = open_sources(specs, cfg.ring_seconds)
        self.worker = build_pool(resolve_devices(cfg.device), cfg.checkpoint or None, cfg.hop, cfg.max_backlog,
                                 cfg.pitch_policy, cfg.pitch_lag, cfg.max_batch, cfg.gather, cfg.cpu_threads,
                                 cfg.inference)
        recognizer = self.worker.recognizer
        self.device = ", ".join(w.name if w.recognizer.device.type == "cpu" else
                                f"{w.name} ({torch.cuda.get_device_name(w.recognizer.device)})"
                                for w in self.worker.workers)
        if not recognizer.trained:
            log.warning("checkpoint %s is UNTRAINED: its labels are meaningless", recognizer.id)
        for source in self.sources:
            self._next_seq[source.name] = self.log.open_stream(source.name) if self.log else 0
            self.worker.add(source, Segmenter(recognizer.classes, cfg.smooth, cfg.on_threshold, cfg.off_threshold))
        for source in self.sources:
            source.start()
        log.info("serving %d stream(s) on %s with %s; events on %s%s%s", len(self.sources), self.device,
                 recognizer.id, cfg.pub, f", replay on {cfg.replay}" if self.replay else "",
                 " (CurveZMQ)" if self.guard.secured else "")
        for source in self.sources:
            log.info("stream %s: %s, next seq %d", source.name, source.spec.spec, self._next_seq[source.name])

    def main_loop(self) -> None:
        poller = zmq.Poller()
        if self.replay is not None:
            poller.register(self.replay.socket, zmq.POLLIN)
        poller.register(self.publisher.socket, zmq.POLLIN)
        while not self.should_exit:
            self._emit(self.worker.step())
            self._heartbeat()
            if not self.worker.active:
                log.info("every source has ended")
                return
            poller.poll(TICK * 1000)
            self.publisher.poll_subscriptions()
            if self.replay is not None:
                self.replay.serve_pending()

    def shutdown(self) -> None:
        for source in self.sources:
            source.stop()
        if self.worker is not None and self.publisher is not None:
            # finish the windows whose audio is already in the rings
            while self.worker.active:
                self._emit(self.worker.step())
            self.worker.close()
            for st in self.worker.streams:
                self._emit_changes(st, st.segmenter.close("shutdown" if self.should_exit else "end of stream"))
            self._heartbeat(force=True)
        if self.replay is not None:
            self.replay.serve_pending()
            self.replay.close()
        if self.log is not None:
            self.log.close()
        if self.publisher is not None:
            self.publisher.close()
        if self.guard is not None:
            self.guard.close()
        log.info("stopped")

    # -- events ----------------------------------------------------------------
    def _emit(self, windows: list[Window]) -> None:
        rec = self.worker.recognizer
        for w in windows:
            st = w.stream
            changes = st.segmenter.update(w.probabilities, w.t_start, w.t_end)
            age = time.monotonic() - w.arrival
            event = events.window_event(
                st.name, self._next_seq[st.name], w.t_start, w.t_end, time.time() - age, w.probabilities,
                rec.classes, st.segmenter.labels, age * 1000, rec.id, rec.trained, st.level_db)
            self._send(event)
            st.windows += 1
            st.latencies.append(event["latency_ms"])
            self._emit_changes(st, changes)

    def _emit_changes(self, st: Stream, changes: list[Change]) -> None:
        for c in changes:
            self._send(events.segment_event(st.name, self._next_seq[st.name], c.instrument, c.state, c.start,
                                            c.end, c.reason, time.time(), self.worker.recognizer.id))

    def _send(self, event: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        if self.log is not None:
            self.log.append(event)
        self._next_seq[event["stream"]] = event["seq"] + 1
        self.publisher.publish(event)
        self.worker.seconds["publish"] += time.perf_counter() - t0

    def _heartbeat(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_heartbeat < self.config.heartbeat:
            return
        self._last_heartbeat = now
        if self.log is not None:
            self.log.sync()
        rec = self.worker.recognizer
        streams = {}
        for st in self.worker.streams:
            ring = st.source.ring
            p50, p99 = st.latency_percentiles()
            streams[st.name] = {
                "source": st.source.spec.spec, "state": st.source.state, "level_db": st.level_db,
                "windows": st.windows,
                "drops": {"audio_s": round(ring.dropped / ring.rate, 3), "windows": st.dropped_windows},
                "queue_s": round(ring.available() / ring.rate, 3),
                "latency_ms": {"p50": p50, "p99": p99},
                "restarts": st.source.restarts, "seq": self._next_seq[st.name] - 1,
            }
        self.publisher.publish(events.status_event(time.time(), now - self.started, self.device, rec.id,
                                                   rec.trained, self.publisher.drops, streams))

    # -- signals ---------------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self._handle_exit)

    def _handle_exit(self, sig: int, frame: Any) -> None:
        self.should_exit = True
