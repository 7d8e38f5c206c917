"""benchmarks/suite.py's pure parts: what it reads out of wrk and how it judges a target."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import suite  # noqa: E402 - benchmarks/ is not a package

WRK = """Running 15s test @ http://172.28.0.11:8088/api/articles
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    16.44ms   38.21ms   1.31s    91.58%
    Req/Sec     0.90k   329.40     1.42k    70.00%
  Latency Distribution
     50%  850.00us
     75%    9.91ms
     90%   43.11ms
     99%    1.31s
  13480 requests in 15.00s, 4.73MB read
  Socket errors: connect 0, read 2, write 0, timeout 5
  Non-2xx or 3xx responses: 3
Requests/sec:    898.83
Transfer/sec:    323.02KB
"""


def test_wrk_figures_are_read_in_milliseconds_with_every_error_counted():
    got = suite.parse_wrk(WRK)
    assert got == {
        "rps": 898.83,
        "requests": 13480,
        "errors": 10,
        "p50_ms": 0.85,
        "p90_ms": 43.11,
        "p99_ms": 1310.0,
    }


def test_wrk_output_without_a_latency_distribution_is_refused():
    with pytest.raises(KeyError):
        suite.parse_wrk("unable to connect to 172.28.0.21:8001 Connection refused\n")


@pytest.mark.parametrize(
    ("measured", "op", "goal", "met"),
    [
        (0.3, "<=", 0.35, True),
        (0.36, "<=", 0.35, False),
        (1.8, ">=", 1.8, True),
        (1.79, ">=", 1.8, False),
        (999.0, "<", 1000, True),
        (1000.0, "<", 1000, False),
    ],
)
def test_a_target_is_met_only_on_its_side_and_a_miss_keeps_what_limits_it(measured, op, goal, met):
    t = suite.target("x", measured, op, goal, "x", limit="the CPU")
    assert t["met"] is met
    assert t["limit"] == ("" if met else "the CPU")


def test_repeated_runs_report_the_median_run_and_keep_every_run():
    runs = [
        {"rps": 300.0, "p99_ms": 9.0},
        {"rps": 900.0, "p99_ms": 1.0},
        {"rps": 500.0, "p99_ms": 4.0},
    ]
    assert suite.median_run(runs) == {
        "rps": 500.0,
        "p99_ms": 4.0,
        "runs_rps": [300.0, 900.0, 500.0],
    }


def test_a_failed_item_is_reported_and_the_others_still_run_and_are_kept(
    monkeypatch, tmp_path, capsys
):
    monkeypatch.setattr(suite, "ITEMS", ["converge", "lb", "cache"])
    monkeypatch.setattr(suite, "WORK", tmp_path / "work")
    monkeypatch.setattr(suite, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(suite.shutil, "which", lambda _name: "/usr/bin/wrk")
    monkeypatch.setattr(suite, "plot", lambda _item, _data: None)
    ran = []

    def measured(name):
        def item():
            ran.append(name)
            return {"targets": [suite.target(f"{name} ratio", 1.0, ">=", 0.9)]}

        return item

    def broken():
        ran.append("lb")
        # What a failed playbook inside an item raises (timed_playbook).
        raise SystemExit("lb-converge failed (rc=2): see lb.log")

    monkeypatch.setattr(suite, "item_converge", measured("converge"))
    monkeypatch.setattr(suite, "item_lb", broken)
    monkeypatch.setattr(suite, "item_cache", measured("cache"))

    assert suite.main([]) == 1
    assert ran == ["converge", "lb", "cache"]
    kept = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert kept == ["suite-cache.json", "suite-converge.json"]
    out = capsys.readouterr().out
    assert "lb: FAILED" in out and "lb-converge failed" in out
    assert "item(s) failed: lb;" in out


def test_a_run_where_every_item_measured_exits_zero(monkeypatch, tmp_path):
    monkeypatch.setattr(suite, "ITEMS", ["cache"])
    monkeypatch.setattr(suite, "WORK", tmp_path / "work")
    monkeypatch.setattr(suite, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(suite.shutil, "which", lambda _name: "/usr/bin/wrk")
    monkeypatch.setattr(suite, "plot", lambda _item, _data: None)
    monkeypatch.setattr(suite, "item_cache", lambda: {"targets": []})
    assert suite.main(["cache"]) == 0
    data = (tmp_path / "results" / "suite-cache.json").read_text()
    assert '"command": "make bench ITEMS=cache"' in data
