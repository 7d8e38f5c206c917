"""The Grafana dashboards shipped in roles/monitoring/files/dashboards: importable JSON that
tools/render_dashboards.py wrote, each panel a Prometheus query over the scraped jobs.
(molecule/cluster evaluates every query against a converged cluster's Prometheus.)"""

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import render_dashboards  # noqa: E402

FILES = sorted((ROOT / "roles" / "monitoring" / "files" / "dashboards").glob("*.json"))


def test_the_files_are_what_the_generator_writes():
    assert render_dashboards.main(["--check"]) == 0
    assert {p.name for p in FILES} == set(render_dashboards.rendered())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_dashboard_imports_with_a_prometheus_data_source(path):
    board = json.loads(path.read_text())
    assert board["uid"] == path.stem
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) and ids
    for p in board["panels"]:
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}"
        assert [t["expr"] for t in p["targets"]], p["title"]


def test_the_overview_covers_requests_errors_latency_and_instances():
    board = json.loads(
        (ROOT / "roles/monitoring/files/dashboards/flaskfleet-overview.json").read_text()
    )
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    for series in (
        "flaskfleet_http_requests_total",
        'status=~"5.."',
        "flaskfleet_http_request_duration_seconds_bucket",
        'up{job="gunicorn"}',
    ):
        assert series in exprs


def test_every_metric_a_panel_reads_comes_from_a_scrape_job():
    """A typo in a metric name would only show as an empty panel: every name must carry the
    prefix of an exporter flaskfleet runs (or be `up`)."""
    known = ("flaskfleet_", "node_", "nginx_", "pg_", "redis_", "up")
    words = {
        "sum",
        "by",
        "rate",
        "count",
        "or",
        "vector",
        "max",
        "min",
        "avg",
        "on",
        "histogram_quantile",
        "increase",
        "time",
        "le",
        "status",
        "job",
        "host",
        "mode",
        "state",
        "key",
        "datname",
        "fstype",
        "redis_instance",
        "idle",
        "cache",
        "broker",
    }
    for path in FILES:
        for p in json.loads(path.read_text())["panels"]:
            for t in p["targets"]:
                expr = re.sub(r'"[^"]*"|\[[^\]]*\]', "", t["expr"])
                for name in re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", expr):
                    assert name in words or name.startswith(known), (
                        f"{path.name}: {p['title']}: {name}"
                    )
