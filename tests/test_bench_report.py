"""The README's "Measured" table and bench/report.md come from collected results only."""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import report  # noqa: E402 - benchmarks/ is not a package


def load_report(requests=100, failed=0, **extra):
    return {
        "requests": requests,
        "failed": failed,
        "failures": {"http_503": failed} if failed else {},
        "rps": 40.0,
        "seconds": requests / 40,
        "latency_ms": {"p50": 12.5, "p90": 30.0, "p99": 250.0, "p999": 900.0, "max": 1200.0},
        "failed_reads": 0,
        "failed_writes": failed,
        "write_outage_s": 1.5 if failed else 0,
        "open_loop": True,
        "timeline": [],
        **extra,
    }


def test_the_readme_table_and_the_report_are_what_the_collected_results_give():
    assert report.check() == [], "run: python benchmarks/report.py render"


def test_the_measured_section_has_no_figure_outside_the_generated_table():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Measured") : text.index("\n## ", text.index("## Measured") + 5)]
    outside = section[: section.index(report.BEGIN)] + section[section.index(report.END) :]
    typed = re.findall(r"\b\d+(?:\.\d+)?\s*(?:ms|s|min|%|failed|requests)\b", outside)
    # 40/s and 20/s name the load generator's settings, not measurements.
    assert typed == [], typed


def test_collect_molecule_reads_scenario_times_step_reports_jobs_and_the_restore(tmp_path):
    logs = tmp_path / ".cache" / "molecule-logs"
    (logs / "cluster-load").mkdir(parents=True)
    (logs / "results").write_text("cluster 0 3000\nredis 2 300\n")
    (logs / "run").write_text("commit=abc123 started=1000 ended=4600 jobs=2\n")
    (logs / "cluster-load" / "02-deploy.json").write_text(json.dumps(load_report(900)))
    (logs / "cluster-load" / "06-switchover.json").write_text(json.dumps(load_report(500, 7)))
    (logs / "cluster-load" / "06-switchover.jobs").write_text(
        json.dumps({"accepted": 40, "lost": 0})
    )
    (logs / "postgresql.log").write_text(
        '"msg": "restore to 2026-12-05 16:37:16+00: 0:01:43.763288"'
    )

    got = report.collect_molecule(logs)

    assert got["commit"] == "abc123"
    assert got["molecule_wall_seconds"] == 3600
    assert got["scenarios"] == {
        "cluster": {"rc": 0, "seconds": 3000},
        "redis": {"rc": 2, "seconds": 300},
    }
    assert got["pitr_restore_seconds"] == 103.8
    steps = got["steps"]["cluster"]
    assert steps["02-deploy"]["requests"] == 900 and steps["02-deploy"]["failed"] == 0
    assert steps["06-switchover"]["jobs"] == {"accepted": 40, "lost": 0}
    table = report.render_table({"make-test": got})
    assert "7 failed of 500" in table and "jobs 40 accepted, 0 lost" in table
    assert "redis 5 min 00 s (FAILED)" in table
    assert "1 min 00 s wall" not in table and "60 min 00 s wall" in table
    assert table.count("at abc123") == len(report.rows({"make-test": got}))


def test_a_stale_readme_table_is_reported(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    (results / "make-test.json").write_text(
        json.dumps(
            {
                "commit": "feed",
                "scenarios": {"cluster": {"rc": 0, "seconds": 10}},
                "molecule_wall_seconds": 10,
                "jobs_at_once": 2,
                "pitr_restore_seconds": None,
                "steps": {},
            }
        )
    )
    monkeypatch.setattr(report, "RESULTS", results)
    assert "README.md (the MEASURED table)" in report.check()


def test_the_bench_results_become_rows_with_their_commit():
    # Shaped as benchmarks/deploy_under_load.py and failover.py write them.
    results = {
        "deploy": {
            "commit": "c2",
            "rate": 40,
            "modes": [
                {"mode": "rolling", "deploy_seconds": 143.0, "load": load_report(5922)},
                {"mode": "naive", "deploy_seconds": 50.0, "load": load_report(2401, 314)},
            ],
        },
        "failover": {
            "commit": "c3",
            "phases": [
                {
                    "phase": "planned",
                    "promotion_seconds": 83.0,
                    "load": load_report(3000, 8) | {"jobs": 134},
                    "jobs": {"accepted": 134, "lost": 0},
                }
            ],
        },
    }
    rows = [None, *report.rows(results)]
    assert rows[1][1].startswith("2 min 23 s; 0 failed of 5922") and rows[1][2].endswith("at c2")
    assert "314 failed of 2401" in rows[2][1]
    assert rows[3][1] == (
        "promotion 1 min 23 s; 0 failed reads, 8 failed writes within 1.5 s, of 3000; "
        "jobs 134, 0 lost"
    )
    assert rows[3][2] == "`make bench-failover` at c3"


def test_suite_targets_become_rows_and_a_missed_one_says_what_limits_it():
    # Shaped as benchmarks/suite.py writes bench/results/suite-<item>.json.
    fig = {"rps": 900.0, "p50_ms": 3.0, "p99_ms": 20.0, "errors": 0, "requests": 9000}
    results = {
        "suite-lb": {
            "command": "make bench ITEMS=lb",
            "commit": "c9",
            "started": "2026-12-06 09:00 UTC",
            "seconds": 120,
            "figures": {"direct": fig, "nginx_keepalive": fig | {"rps": 630.0}},
            "targets": [
                {
                    "name": "throughput through nginx / straight to the instances",
                    "measured": 0.7,
                    "op": ">=",
                    "goal": 0.9,
                    "unit": "x",
                    "met": False,
                    "limit": "nginx shares the 2 cores",
                }
            ],
            "notes": [],
        }
    }
    rows = report.rows(results)
    assert rows == [
        (
            "lb: throughput through nginx / straight to the instances",
            "0.7x (target >= 0.9x: **missed**)",
            "`make bench ITEMS=lb` at c9",
        )
    ]
    text = "\n".join(report.render_suite(results))
    assert "- nginx keepalive: 630 requests/s" in text
    assert "measured 0.7x, missed. What limits it: nginx shares the 2 cores" in text
    assert "Not measured yet: `make bench ITEMS=cache`." in text
