"""Prometheus metrics, multiprocess-safe when PROMETHEUS_MULTIPROC_DIR is set.

PROMETHEUS_MULTIPROC_DIR must be in the environment before this module is imported (the
systemd EnvironmentFile does that) and emptied when the gunicorn service starts. The gunicorn
config calls child_exit(server, worker) from its `child_exit` hook.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

LABELS = ("endpoint", "method", "status")

REQUESTS = Counter(
    "flaskfleet_http_requests_total", "HTTP requests served, by route endpoint.", LABELS
)
LATENCY = Histogram(
    "flaskfleet_http_request_duration_seconds",
    "HTTP request latency in seconds, by route endpoint.",
    LABELS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CACHE_RESULTS = Counter("flaskfleet_cache_requests_total", "Cache lookups by result.", ("result",))
DB_READS = Counter(
    "flaskfleet_db_reads_total", "Reads by the database that served them.", ("target",)
)


def child_exit(server, worker) -> None:
    """gunicorn `child_exit` hook: drop the dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)


def render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def init_app(app: Flask) -> None:
    @app.before_request
    def _start_timer():
        g._ff_start = time.perf_counter()

    @app.after_request
    def _record(response):
        start = g.pop("_ff_start", None)
        if start is not None:
            rule = request.url_rule
            endpoint = rule.rule if rule is not None else "<unmatched>"
            labels = (endpoint, request.method, str(response.status_code))
            REQUESTS.labels(*labels).inc()
            LATENCY.labels(*labels).observe(time.perf_counter() - start)
        return response

    @app.get("/metrics")
    def metrics():
        return Response(render(), content_type=CONTENT_TYPE_LATEST)
