"""What a daemon's worker did over a bench's measured interval, from two scrapes of its ``--metrics``.

``bench serve`` (one daemon) scrapes ``/metrics`` as the interval starts and as it ends; the
difference gives the working steps (those that read, pushed or inferred): how many per second, their
mean duration and the bucket bound under which 99 % of them finished; the windows per forward pass;
and the host time per stage as a share of the interval (``busy``: read, mel, pitch, windows, model,
publish; 1.0 = one core's worth, summed over the workers).
"""

from __future__ import annotations

import math
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(address: str, timeout: float = 5.0) -> tuple[Samples, float, int]:
    """``http://ADDRESS/metrics`` -> ``{(sample name, sorted labels): value}``, the seconds from the request
    to the answer's last byte (what rendering it cost the daemon, plus the loopback) and its bytes."""
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as r:
        body = r.read()
    took = time.perf_counter() - t0
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    return samples, took, len(body)


def step_figures(before: Samples, after: Samples, seconds: float) -> dict:
    """The worker's figures over ``seconds`` between two :func:`scrape` results (a dict for a bench row)."""
    def delta(name: str, keep=lambda labels: True) -> float:
        return sum(v - before.get((n, labels), 0.0) for (n, labels), v in after.items() if n == name and keep(labels))

    steps = delta("instrumentd_worker_step_seconds_count")
    bounds = sorted({dict(labels)["le"] for n, labels in after if n == "instrumentd_worker_step_seconds_bucket"},
                    key=float)
    within = {b: delta("instrumentd_worker_step_seconds_bucket", lambda lb, b=b: dict(lb)["le"] == b) for b in bounds}
    p99 = next((b for b in bounds if within[b] >= 0.99 * steps), None)
    passes = delta("instrumentd_batch_windows_count")
    stages = sorted({dict(labels)["stage"] for n, labels in after if n == "instrumentd_busy_seconds_total"})
    busy = {s: round(delta("instrumentd_busy_seconds_total", lambda lb, s=s: dict(lb)["stage"] == s) / seconds, 3)
            for s in stages}
    return {
        "steps_per_s": round(steps / seconds, 1),
        "step_mean_ms": round(1000 * delta("instrumentd_worker_step_seconds_sum") / steps, 2) if steps else None,
        # the bound of the first bucket that holds 99 % of the steps (None: past the largest bound)
        "step_p99_ms_at_most": (round(1000 * float(p99), 1) if p99 is not None and math.isfinite(float(p99))
                                else None),
        "windows_per_pass": round(delta("instrumentd_batch_windows_sum") / passes, 1) if passes else None,
        "busy": busy,
    }
