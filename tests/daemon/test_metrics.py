"""``serve --metrics``: a real daemon subprocess scraped over real HTTP; probes; bad addresses refused."""

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from instrumentd.daemon.config import load_config
from instrumentd.daemon.metrics import readiness
from instrumentd.daemon.server import Server

from ..conftest import free_port

pytestmark = pytest.mark.slow


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` from Prometheus text."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_and_probes_of_a_served_daemon(daemon, subscriber, wav):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    d = daemon([f"clip=file:{wav(30)}"], "--hop", "0.5", "--metrics", f"127.0.0.1:{port}")
    sub = subscriber(d.pub, ("window.clip",))

    def wait_status(path, code):
        for _ in range(600):
            status, body = get(base + path)
            assert d.proc.poll() is None, d.log_text()
            if status == code:
                return json.loads(body)
            time.sleep(0.1)
        raise AssertionError(f"{path} never answered {code}; last {status} {body}")

    assert wait_status("/healthz", 200) == {"ok": True, "problems": []}
    assert wait_status("/readyz", 200) == {"ok": True, "problems": []}
    seen = sub.events(lambda ev: len(ev) >= 4, timeout=60)
    status, text = get(base + "/metrics")
    assert status == 200
    m = samples(text)
    clip = (("stream", "clip"),)
    published = m[("instrumentd_windows_published_total", clip)]
    assert published >= len(seen) - 1 >= 3  # a scrape may fall between a window's publishing and its count
    # the histogram is fed as each event goes out, the counter read at scrape time: one may lead by a window
    assert abs(m[("instrumentd_latency_seconds_count", clip)] - published) <= 1
    assert 0 < m[("instrumentd_latency_seconds_sum", clip)] < published * 1.0  # under a second a window
    assert -60 < m[("instrumentd_level_dbfs", clip)] < 0  # the melody is at about -11 dBFS
    assert m[("instrumentd_source_state", (("instrumentd_source_state", "running"), ("stream", "clip")))] == 1
    assert m[("instrumentd_source_state", (("instrumentd_source_state", "failed"), ("stream", "clip")))] == 0
    assert m[("instrumentd_dropped_windows_total", clip)] == 0
    assert m[("instrumentd_source_restarts_total", clip)] == 0
    assert m[("instrumentd_publisher_drops_total", ())] == 0
    assert m[("instrumentd_forward_passes_total", (("worker", "cpu"),))] >= published - 1
    assert m[("instrumentd_batch_windows_count", ())] >= published - 1
    cpu = (("worker", "cpu"),)
    steps = m[("instrumentd_worker_step_seconds_count", cpu)]  # every pass came out of a working step
    assert steps >= m[("instrumentd_forward_passes_total", cpu)] > 0
    assert m[("instrumentd_worker_step_seconds_bucket", (("le", "+Inf"), ("worker", "cpu")))] == steps
    assert m[("instrumentd_worker_step_seconds_bucket", (("le", "0.001"), ("worker", "cpu")))] < steps  # a pass is slower
    assert 0 < m[("instrumentd_worker_step_seconds_sum", cpu)] < m[("instrumentd_uptime_seconds", ())]
    assert m[("instrumentd_busy_seconds_total", (("stage", "model"), ("worker", "cpu")))] > 0
    assert m[("instrumentd_busy_seconds_total", (("stage", "publish"), ("worker", "main")))] > 0
    assert m[("instrumentd_busy_seconds_total", (("stage", "decide"), ("worker", "main")))] > 0
    assert m[("instrumentd_ready", ())] == 1
    assert m[("process_resident_memory_bytes", ())] > 10e6
    assert not any(name == "instrumentd_device_memory_bytes" for name, _ in m)  # a CPU has no device memory
    assert get(base + "/nothing")[0] == 404
    # every series the Grafana dashboard asks for is one this daemon serves (device memory: CUDA only)
    dashboard = json.loads((Path(__file__).parents[2] / "docs" / "grafana-instrumentd.json").read_text())
    asked = {name for p in dashboard["panels"] for t in p["targets"]
             for name in re.findall(r"\b(?:instrumentd|process)_[a-z_]+", t["expr"])}
    served = {name for name, _ in m}
    assert asked - served == {"instrumentd_device_memory_bytes"}
    d.proc.send_signal(signal.SIGINT)
    assert d.wait() == 0
    assert get(base + "/healthz")[0] == 0  # the endpoint closed with the daemon


def test_readiness_names_what_is_missing(tmp_path):
    server = Server(load_config(env={}, sources=["a=mic"], log_dir=str(tmp_path)))
    assert readiness(server) == ["model not loaded", "event endpoints not bound", "no sources opened"]
    server.signals.should_exit = True
    assert readiness(server)[-1] == "shutting down"


def test_a_taken_port_is_one_line(tmp_path, wav):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "instrumentd", "serve", "--source", f"file:{wav(4)}",
                              "--pub", f"tcp://127.0.0.1:{free_port()}", "--replay", "", "--log-dir", "",
                              "--metrics", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith(
        f"instrumentd serve: error: metrics '127.0.0.1:{port}': cannot listen there (")


def test_a_public_address_needs_insecure():
    out = subprocess.run([sys.executable, "-m", "instrumentd", "serve", "--source", "mic", "--metrics",
                          "0.0.0.0:9108"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("instrumentd serve: error: metrics '0.0.0.0:9108' is reachable from other")


@pytest.mark.gpu
def test_device_memory_on_cuda(daemon, wav):
    port = free_port()
    d = daemon([f"clip=file:{wav(12)}"], "--metrics", f"127.0.0.1:{port}", device="cuda")
    for _ in range(1800):  # start-up on a GPU times and checks the inference paths first
        assert d.proc.poll() is None, d.log_text()
        status, text = get(f"http://127.0.0.1:{port}/metrics")
        m = samples(text) if status == 200 else {}
        if m.get(("instrumentd_windows_published_total", (("stream", "clip"),)), 0) >= 1:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("no window published")
    memory = {labels: v for (name, labels), v in m.items() if name == "instrumentd_device_memory_bytes"}
    allocated = [v for labels, v in memory.items() if ("kind", "allocated") in labels]
    assert allocated and all(v > 0 for v in allocated)  # the network's weights at least
