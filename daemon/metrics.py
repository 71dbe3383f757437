"""``serve --metrics HOST:PORT``: Prometheus metrics and health probes over HTTP.

Three paths on one small threaded HTTP server (the standard library's, through prometheus-client's
WSGI app), in a thread of its own so that a scrape never waits for the main loop:

* ``/metrics``: Prometheus text format (below).
* ``/healthz``: 200 while the daemon is alive: starting up, or its main loop has ticked (sent a
  status heartbeat) within :data:`STALL_S`; 503 with the reason otherwise.
* ``/readyz``: 200 once the model is loaded, the event endpoints are bound and every source has
  started; 503 with what is missing before that (and after shutdown began).

Most figures are read from the daemon's own counters when Prometheus scrapes (:class:`_Collector`),
so the hot path pays nothing for them; the latency histogram, the segment counter and the batch
histogram are fed from the events the main loop already emits (:meth:`Metrics.observe`,
:meth:`Metrics.observe_batch`). The per-stream series are formatted in one pass by
:mod:`.stream_metrics` (prometheus-client's families took 0.1-0.3 s for 1,000 streams); the rest go
through prometheus-client. The answer is text format 0.0.4, whatever the scraper accepts.

Metric names (``stream`` label on the per-stream ones):

=========================================  =========  ==================================================
``instrumentd_windows_published_total``    counter    window events published
``instrumentd_segments_total``             counter    segment events, label ``state`` (start, end)
``instrumentd_dropped_audio_seconds_total`` counter   audio dropped by a full ring buffer, seconds
``instrumentd_dropped_windows_total``      counter    windows skipped (gaps, a stream that fell behind)
``instrumentd_latency_seconds``            histogram  last sample of a window received -> published
``instrumentd_level_dbfs``                 gauge      RMS level of the newest audio, dBFS
``instrumentd_queue_seconds``              gauge      audio waiting in the ring buffer, seconds
``instrumentd_source_state``               stateset   starting, running, restarting, ended, failed
``instrumentd_source_restarts_total``      counter    source restarts (a lost device, a dead ffmpeg)
``instrumentd_publisher_drops_total``      counter    events the PUB socket dropped (slow subscribers)
``instrumentd_batch_windows``              histogram  windows per batch the worker delivered (one forward
                                                      pass; with several devices, what their passes
                                                      finished between two steps of the main loop)
``instrumentd_forward_passes_total``       counter    forward passes, label ``worker``
``instrumentd_worker_step_seconds``        histogram  a worker's steps that read, pushed or inferred: their
                                                      durations, label ``worker``
``instrumentd_busy_seconds_total``         counter    host time per stage, labels ``worker``, ``stage``
                                                      (read, mel, pitch, windows, model; ``main``'s publish)
``instrumentd_device_memory_bytes``        gauge      CUDA memory, labels ``device``, ``kind``
                                                      (allocated, reserved); absent on a CPU
``instrumentd_uptime_seconds``             gauge      seconds since the daemon started
``instrumentd_ready``                      gauge      1 when /readyz answers 200
=========================================  =========  ==================================================

plus prometheus-client's ``process_*`` (CPU seconds, resident memory, open files) and
``python_info``. docs/grafana-instrumentd.json is a dashboard of these.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import socketserver
import threading
import time
from typing import Any, Iterator, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from instrumentd.pipeline.errors import ParameterError

from .security import parse_listen
from .stream_metrics import StreamCounters, render

log = logging.getLogger("instrumentd.daemon.metrics")

__all__ = ["Metrics", "MetricsServer", "STALL_S"]

STALL_S = 30.0  # seconds without a heartbeat after which /healthz reports the main loop stalled


class Served(Protocol):
    """What the metrics and health endpoints read of a running daemon
    (:class:`~instrumentd.daemon.server.Server`); times are ``time.monotonic()`` seconds."""

    config: Any
    worker: Any  # the WorkerPool, None until the model is loaded
    publisher: Any
    replay: Any
    sources: list
    started: float
    last_heartbeat: float  # 0.0 before the first

    @property
    def should_exit(self) -> bool: ...
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)  # windows


class Metrics:
    """The daemon's registry and per-stream counters: histograms fed by the main loop, everything else
    read at scrape time.

    Parameters
    ----------
    server : the daemon whose sources, worker and publisher are read when Prometheus scrapes
    """

    def __init__(self, server: Served):
        self.server = server
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.streams = StreamCounters()
        self.batches = Histogram("instrumentd_batch_windows",
                                 "Windows per batch the worker delivered (one forward pass on one device)",
                                 buckets=BATCH_BUCKETS, registry=self.registry)
        self.registry.register(_Collector(server))

    def observe(self, event: dict[str, Any]) -> None:
        """Count one published event (window or segment)."""
        self.streams.observe(event)

    def observe_batch(self, n_windows: int) -> None:
        """One batch of ``n_windows`` windows came out of the worker."""
        self.batches.observe(n_windows)

    def exposition(self) -> bytes:
        """Every series, Prometheus text format 0.0.4."""
        worker = self.server.worker
        streams = list(worker.streams) if worker is not None else []
        return generate_latest(self.registry) + render(streams, self.streams)


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, int]]:
    """Counts per bucket (upper ``bounds`` in seconds, then one for longer) -> Prometheus's cumulative
    ``(le, count)`` pairs, ``+Inf`` last."""
    return list(zip([f"{b:g}" for b in bounds] + ["+Inf"], itertools.accumulate(list(counts))))


def readiness(server: Served) -> list[str]:
    """What keeps ``server`` from being ready (empty when it is)."""
    missing = []
    if server.worker is None:
        missing.append("model not loaded")
    if server.publisher is None or (server.config.replay and server.config.log_dir and server.replay is None):
        missing.append("event endpoints not bound")
    if not server.sources:
        missing.append("no sources opened")
    starting = [s.name for s in server.sources if s.state == "starting"]
    if starting:
        missing.append("sources not started: " + ", ".join(starting))
    if server.should_exit:
        missing.append("shutting down")
    return missing


def liveness(server: Served) -> list[str]:
    """Why ``server`` is not alive (empty when it is): a main loop without a heartbeat for :data:`STALL_S`."""
    last = server.last_heartbeat
    if last and time.monotonic() - last > max(STALL_S, 3 * server.config.heartbeat):
        return [f"main loop stalled: no heartbeat for {time.monotonic() - last:.0f} s"]
    return []


class _Collector:
    """Reads the daemon's counters when Prometheus scrapes (the scrape's thread, not the main loop's)."""

    def __init__(self, server: Served):
        self.server = server

    def collect(self) -> Iterator[Any]:
        """The daemon-wide and per-worker families (the per-stream ones: :mod:`.stream_metrics`)."""
        srv = self.server
        if srv.publisher is not None:
            yield CounterMetricFamily("instrumentd_publisher_drops", "Events the PUB socket dropped",
                                      value=srv.publisher.drops)
        if srv.worker is not None:
            passes = CounterMetricFamily("instrumentd_forward_passes", "Forward passes", labels=["worker"])
            memory = GaugeMetricFamily("instrumentd_device_memory_bytes", "CUDA memory, bytes",
                                       labels=["device", "kind"])
            steps = HistogramMetricFamily("instrumentd_worker_step_seconds",
                                          "A worker's steps that read, pushed or inferred: their durations",
                                          labels=["worker"])
            busy = CounterMetricFamily("instrumentd_busy_seconds", "Host time per stage, seconds",
                                       labels=["worker", "stage"])
            for stage in ("decide", "publish"):
                busy.add_metric(["main", stage], srv.worker.seconds[stage])
            for w in srv.worker.workers:
                passes.add_metric([w.name], w.passes)
                steps.add_metric([w.name], _cumulative(w.step_buckets, w.step_counts), w.step_seconds)
                for stage, seconds in list(w.seconds.items()):
                    busy.add_metric([w.name, stage], seconds)
                device = w.recognizer.device
                if device.type == "cuda":
                    import torch

                    memory.add_metric([str(device), "allocated"], torch.cuda.memory_allocated(device))
                    memory.add_metric([str(device), "reserved"], torch.cuda.memory_reserved(device))
            yield from (passes, steps, busy, memory)
        yield GaugeMetricFamily("instrumentd_uptime_seconds", "Seconds since the daemon started",
                                value=time.monotonic() - srv.started)
        yield GaugeMetricFamily("instrumentd_ready", "1 when /readyz answers 200", value=float(not readiness(srv)))


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("metrics %s: " + format, self.client_address[0], *args)


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` for ``server`` on ``listen`` (``HOST:PORT``), in a thread.

    Raises ParameterError when the address cannot be bound (taken, or not this machine's).
    """

    def __init__(self, listen: str, server: Served):
        self.metrics = Metrics(server)
        host, port = parse_listen(listen)

        def metrics_app(environ, start_response):
            body = self.metrics.exposition()
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
            return [body]

        def probe(check, environ, start_response):
            problems = check(server)
            status = "503 Service Unavailable" if problems else "200 OK"
            body = json.dumps({"ok": not problems, "problems": problems}).encode()
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]

        def app(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path == "/metrics":
                return metrics_app(environ, start_response)
            if path == "/healthz":
                return probe(liveness, environ, start_response)
            if path == "/readyz":
                return probe(readiness, environ, start_response)
            body = b"instrumentd: /metrics, /healthz, /readyz\n"
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("_Server", (_ThreadingServer,), {"address_family": family})
        try:
            self.httpd = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
        except OSError as exc:
            raise ParameterError(f"metrics {listen!r}: cannot listen there ({exc.strerror})") from None
        self.address = f"{host}:{self.httpd.server_port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.25,), name="metrics", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s/metrics (and /healthz, /readyz)", listen)

    def observe(self, event: dict[str, Any]) -> None:
        """Count one published event (see :meth:`Metrics.observe`)."""
        self.metrics.observe(event)

    def observe_batch(self, n_windows: int) -> None:
        self.metrics.observe_batch(n_windows)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()
