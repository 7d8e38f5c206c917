#!/usr/bin/env python3
"""Write the Grafana dashboards of roles/monitoring (files/dashboards/*.json).

    python tools/render_dashboards.py          # (re)write the JSON files
    python tools/render_dashboards.py --check  # exit 1 when a file differs from this source

The panels are defined here, once, and every query is a PromQL expression over the series
the flaskfleet scrape jobs produce (node, nginx, postgres, redis, gunicorn). The JSON files
are the importable form (Grafana's "Import dashboard", or a file provider): each asks for a
Prometheus data source on import (``${DS_PROMETHEUS}``). ``tests/test_dashboards.py`` checks
the files against this source; molecule/cluster evaluates every panel's query against the
lab's Prometheus and fails on a query that errors or returns no series.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "roles" / "monitoring" / "files" / "dashboards"
DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

# Queries a quiet cluster answers too: a sum over no 5xx is no series, so `or vector(0)`.
RATE = "5m"
DISKS = 'fstype!~"tmpfs|ramfs|squashfs|nsfs|fuse.*"'
DASHBOARDS = {
    "flaskfleet-overview": {
        "title": "flaskfleet / Overview",
        "panels": [
            (
                "Requests per second by status",
                "timeseries",
                "reqps",
                f"sum by (status) (rate(flaskfleet_http_requests_total[{RATE}]))",
                "{{status}}",
            ),
            (
                "5xx ratio",
                "timeseries",
                "percentunit",
                f'(sum(rate(flaskfleet_http_requests_total{{status=~"5.."}}[{RATE}])) or vector(0))'
                f" / sum(rate(flaskfleet_http_requests_total[{RATE}]))",
                "5xx",
            ),
            (
                "Latency p99",
                "timeseries",
                "s",
                "histogram_quantile(0.99, sum by (le) "
                f"(rate(flaskfleet_http_request_duration_seconds_bucket[{RATE}])))",
                "p99",
            ),
            (
                "Gunicorn instances up",
                "stat",
                "none",
                'count(up{job="gunicorn"} == 1) or vector(0)',
                "up",
            ),
            (
                "Targets down by job",
                "timeseries",
                "none",
                "count by (job) (up == 0) or sum by (job) (up * 0)",
                "{{job}}",
            ),
            (
                "Load balancer requests per second",
                "timeseries",
                "reqps",
                f"sum by (host) (rate(nginx_http_requests_total[{RATE}]))",
                "{{host}}",
            ),
            (
                "Load balancer active connections",
                "timeseries",
                "none",
                "sum by (host) (nginx_connections_active)",
                "{{host}}",
            ),
            (
                "CPU busy by host",
                "timeseries",
                "percentunit",
                f'1 - avg by (host) (rate(node_cpu_seconds_total{{mode="idle"}}[{RATE}]))',
                "{{host}}",
            ),
            (
                "Memory available by host",
                "timeseries",
                "bytes",
                "node_memory_MemAvailable_bytes",
                "{{host}}",
            ),
            (
                "Disk free by host",
                "timeseries",
                "percentunit",
                f"min by (host) (node_filesystem_avail_bytes{{{DISKS}}}"
                f" / node_filesystem_size_bytes{{{DISKS}}})",
                "{{host}}",
            ),
            (
                "Days until a certificate expires",
                "timeseries",
                "d",
                "min by (host) ((flaskfleet_tls_certificate_not_after_seconds - time()) / 86400)",
                "{{host}}",
            ),
        ],
    },
    "flaskfleet-database": {
        "title": "flaskfleet / Database",
        "panels": [
            ("PostgreSQL up", "stat", "none", "pg_up", "{{host}}"),
            ("Role (1 = replica)", "stat", "none", "flaskfleet_pg_recovery_is_replica", "{{host}}"),
            (
                "Replicas streaming",
                "stat",
                "none",
                "sum(flaskfleet_pg_recovery_streaming) or vector(0)",
                "streaming",
            ),
            (
                "Replay lag (seconds)",
                "timeseries",
                "s",
                "flaskfleet_pg_recovery_replay_lag_seconds",
                "{{host}}",
            ),
            (
                "WAL received, not replayed",
                "timeseries",
                "bytes",
                "flaskfleet_pg_recovery_replay_backlog_bytes",
                "{{host}}",
            ),
            (
                "WAL retained by each slot",
                "timeseries",
                "bytes",
                "flaskfleet_pg_slot_retained_bytes",
                "{{slot_name}}",
            ),
            (
                "Connections by state",
                "timeseries",
                "none",
                'sum by (host, state) (pg_stat_activity_count{datname!~"template.*"})',
                "{{host}} {{state}}",
            ),
            (
                "Commits per second",
                "timeseries",
                "ops",
                f"sum by (host) (rate(pg_stat_database_xact_commit[{RATE}]))",
                "{{host}}",
            ),
        ],
    },
    "flaskfleet-redis-celery": {
        "title": "flaskfleet / Redis and Celery",
        "panels": [
            ("Redis up", "stat", "none", "redis_up", "{{redis_instance}}"),
            ("Memory used", "timeseries", "bytes", "redis_memory_used_bytes", "{{redis_instance}}"),
            (
                "Memory used of maxmemory",
                "timeseries",
                "percentunit",
                "redis_memory_used_bytes / (redis_memory_max_bytes > 0)",
                "{{redis_instance}}",
            ),
            (
                "Commands per second",
                "timeseries",
                "ops",
                f"sum by (redis_instance) (rate(redis_commands_processed_total[{RATE}]))",
                "{{redis_instance}}",
            ),
            (
                "Connected clients",
                "timeseries",
                "none",
                "redis_connected_clients",
                "{{redis_instance}}",
            ),
            (
                "Cache hit ratio",
                "timeseries",
                "percentunit",
                f'rate(redis_keyspace_hits_total{{redis_instance="cache"}}[{RATE}])'
                f' / (rate(redis_keyspace_hits_total{{redis_instance="cache"}}[{RATE}])'
                f' + rate(redis_keyspace_misses_total{{redis_instance="cache"}}[{RATE}]))',
                "hits",
            ),
            (
                "Evicted keys (broker must stay 0)",
                "timeseries",
                "none",
                f"increase(redis_evicted_keys_total[{RATE}])",
                "{{redis_instance}}",
            ),
            (
                "Celery queue length",
                "timeseries",
                "none",
                'max by (key) (redis_key_size{redis_instance="broker"}) or on() vector(0)',
                "{{key}}",
            ),
        ],
    },
}


def panel(index: int, title: str, kind: str, unit: str, expr: str, legend: str) -> dict:
    width = 8 if kind == "stat" else 12
    per_row = 24 // width
    return {
        "id": index + 1,
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {
            "h": 8,
            "w": width,
            "x": (index % per_row) * width,
            "y": (index // per_row) * 8,
        },
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [{"refId": "A", "datasource": DS, "expr": expr, "legendFormat": legend}],
    }


def dashboard(uid: str, spec: dict) -> dict:
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "The Prometheus of the flaskfleet monitoring host",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "uid": uid,
        "title": spec["title"],
        "tags": ["flaskfleet"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": [panel(i, *p) for i, p in enumerate(spec["panels"])],
    }


def rendered() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        f"{uid}.json": json.dumps(dashboard(uid, spec), indent=2, sort_keys=True) + "\n"
        for uid, spec in DASHBOARDS.items()
    }


def main(argv: list[str]) -> int:
    files = rendered()
    if "--check" in argv:
        stale = [
            n
            for n, text in files.items()
            if not (OUT / n).is_file() or (OUT / n).read_text() != text
        ]
        extra = [p.name for p in OUT.glob("*.json") if p.name not in files]
        for name in stale + extra:
            print(
                f"{OUT / name}: not what tools/render_dashboards.py writes; run it", file=sys.stderr
            )
        return 1 if stale or extra else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
