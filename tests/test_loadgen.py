"""tools/loadgen.py: what the failover proof relies on — failed reads and writes told
apart, the write outage window, and every accepted job accounted for — and that the load
is open loop: sent on schedule through a stall, latency timed from the schedule, nothing
scheduled dropped without being counted."""

from __future__ import annotations

import importlib.util
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("loadgen", ROOT / "tools" / "loadgen.py")
loadgen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(loadgen)


class App(BaseHTTPRequestHandler):
    """Reads always work; article writes fail while `writes_down`; jobs are accepted."""

    writes_down = True
    jobs: dict[str, dict] = {}

    def log_message(self, *args):
        pass

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Served-By", "test:1")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/api/jobs/"):
            key = self.path.rsplit("/", 1)[1]
            self.answer(200, self.jobs.get(key, {"key": key, "status": "unknown", "effects": 0}))
        else:
            self.answer(200, {"ok": True})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/api/jobs":
            self.jobs[body["key"]] = {"key": body["key"], "status": "applied", "effects": 1}
            self.answer(202, {"key": body["key"]})
        elif self.writes_down:
            self.answer(503, {"error": "read-only"})
        else:
            self.answer(201, {"id": 1})


@pytest.fixture
def app():
    App.jobs = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), App)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def load(argv: dict) -> loadgen.Load:
    """A load run with the CLI's defaults (short unless told otherwise), not started."""
    defaults = vars(loadgen.build_parser().parse_args([]))
    short = {"rate": 100.0, "concurrency": 4, "duration": 1.0, "max_requests": 1000}
    args = defaults | short | {"timeout": 5.0, "job_prefix": "t"} | argv
    return loadgen.Load(loadgen.argparse.Namespace(**args))


def run(argv: dict) -> dict:
    return load(argv).run()


def test_outage_counts_reads_and_writes_and_spans_the_failed_writes():
    failed = [(1.0, 1.5, "GET"), (2.0, 2.2, "POST"), (5.0, 9.5, "POST"), (3.0, 3.1, "")]
    assert loadgen.outage(failed) == {
        "failed_reads": 1,
        "failed_writes": 2,
        "write_outage_s": 7.5,
    }
    assert loadgen.outage([(1.0, 2.0, "GET")])["write_outage_s"] == 0.0


def test_failed_writes_are_told_apart_from_reads_and_jobs_are_kept(app):
    report = run({"url": app, "mix": "GET /a:50,POST /api/articles:30,POST /api/jobs:20"})
    assert report["failed_reads"] == 0
    assert report["failed_writes"] == report["failed"] > 0
    assert report["write_outage_s"] > 0.5
    assert report["jobs"]["accepted"] == len(report["jobs"]["keys"]) > 0
    assert all(key.startswith("t-") for key in report["jobs"]["keys"])
    assert set(report["jobs"]["keys"]) == set(App.jobs)


def test_check_jobs_accounts_for_every_accepted_job(app, tmp_path):
    App.jobs = {
        "done": {"key": "done", "status": "applied", "effects": 1, "executions": 2},
        "gave-up": {"key": "gave-up", "status": "failed", "effects": 0, "executions": 5},
    }
    report = tmp_path / "load.json"
    report.write_text(json.dumps({"jobs": {"keys": ["done", "gave-up", "never-ran"]}}))
    args = loadgen.argparse.Namespace(check_jobs=str(report), url=app, wait=0.0, timeout=5.0)
    result = loadgen.check_jobs(args)
    assert result == {
        "accepted": 3,
        "applied_once": 1,
        "failed": ["gave-up"],
        "not_ended": ["never-ran"],
        "executions": 7,
        "lost": 2,
    }


def test_check_jobs_exits_non_zero_when_a_job_is_lost(app, tmp_path):
    report = tmp_path / "load.json"
    report.write_text(json.dumps({"jobs": {"keys": ["missing"]}}))
    assert loadgen.main(["--check-jobs", str(report), "--url", app, "--wait", "0"]) == 1
    App.jobs = {"missing": {"key": "missing", "status": "applied", "effects": 1}}
    assert loadgen.main(["--check-jobs", str(report), "--url", app, "--wait", "0"]) == 0


class Stalling(BaseHTTPRequestHandler):
    """Answers at once, except that a request arriving within `window` (monotonic times)
    is held `stall` seconds first. HTTP/1.1: a client may keep its connection."""

    protocol_version = "HTTP/1.1"
    window = (0.0, 0.0)
    stall = 0.0
    peers: set = set()

    def log_message(self, *args):
        pass

    def do_GET(self):
        Stalling.peers.add(self.client_address)
        if self.window[0] <= time.monotonic() < self.window[1]:
            time.sleep(self.stall)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.send_header("X-Served-By", "stall:1")
        self.end_headers()
        self.wfile.write(b"{}")


class Server(ThreadingHTTPServer):
    request_queue_size = 256  # a burst of connections is not refused by the listen backlog
    daemon_threads = True


@pytest.fixture
def stalling():
    Stalling.window, Stalling.stall, Stalling.peers = (0.0, 0.0), 0.0, set()
    server = Server(("127.0.0.1", 0), Stalling)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_sends_stay_on_schedule_through_a_stall_and_latency_counts_from_the_schedule(stalling):
    # 5 s at 50/s; every request that arrives from t=1 s to t=3 s waits 2 s for its answer.
    rate, duration = 50, 5.0
    gen = load({"url": stalling, "rate": float(rate), "duration": duration, "mix": "GET /:1"})
    now = time.monotonic()
    Stalling.window, Stalling.stall = (now + 1.0, now + 3.0), 2.0
    report = gen.run()

    expected = rate * duration
    assert abs(report["scheduled"] - expected) <= 1
    assert report["sent"] == report["scheduled"] == report["requests"] == report["ok"]
    assert report["open_loop"] is True and report["failed"] == 0
    # On schedule: no pause in the sends while ~100 answers were outstanding. A generator
    # that waits for answers would stop sending for the 2 s stall; the bound leaves room for
    # a machine busy with other work (make test runs these tests beside the scenarios).
    sends = sorted(o.sent for o in gen.outcomes)
    assert max(b - a for a, b in itertools.pairwise(sends)) <= 0.5
    assert report["send_lag_ms"]["p99"] <= 500
    assert report["max_in_flight_seen"] >= 50  # the concurrency grew during the stall
    # The stall shows: 40% of the requests waited 2 s from when they were due.
    assert report["latency_ms"]["p99"] >= 1500
    assert report["latency_ms"]["p90"] >= 1500
    assert report["latency_ms"]["p50"] < 1000
    for name in ("p50", "p90", "p99", "p999", "max"):
        assert report["latency_ms"][name] >= report["service_ms"][name]
    # Per second of the schedule: slow while stalled, fast before and after.
    timeline = report["timeline"]
    assert sum(timeline["requests"]) == report["requests"]
    assert len(timeline["p99_ms"]) == 5
    assert timeline["p99_ms"][1] >= 1500 and timeline["p99_ms"][2] >= 1500
    assert timeline["p99_ms"][0] < 1000 and timeline["p99_ms"][4] < 1000
    assert max(timeline["max_in_flight"][1:3]) >= 50


def test_a_request_beyond_the_in_flight_limit_is_counted_not_dropped(stalling):
    now = time.monotonic()
    Stalling.window, Stalling.stall = (now, now + 60.0), 0.5
    report = run(
        {
            "url": stalling,
            "rate": 40.0,
            "duration": 1.0,
            "mix": "GET /:1",
            "max_in_flight": 4,
            "concurrency": 2,
        }
    )
    not_sent = report["failures"].get(loadgen.NOT_SENT, 0)
    assert abs(report["scheduled"] - 40) <= 1
    assert report["requests"] == report["scheduled"] == report["sent"] + not_sent
    assert not_sent >= 20 and report["ok"] == report["sent"] >= 4
    assert report["max_in_flight_seen"] == 4
    assert report["failed"] == not_sent == report["failed_reads"]
    assert sum(report["timeline"]["failures"]) == not_sent
    # The requests that went out waited for their turn: that is in their latency.
    assert report["latency_ms"]["max"] >= 500


def test_keepalive_reuses_connections_and_the_default_opens_one_per_request(stalling):
    report = run({"url": stalling, "rate": 50.0, "duration": 1.0, "mix": "GET /:1"})
    assert report["ok"] == report["requests"] >= 49
    assert len(Stalling.peers) == report["requests"]
    Stalling.peers = set()
    report = run(
        {
            "url": stalling,
            "rate": 50.0,
            "duration": 1.0,
            "mix": "GET /:1",
            "keepalive": True,
            "concurrency": 2,
        }
    )
    assert report["ok"] == report["requests"] >= 49
    # Connections are reused: a handful, not one per request. (A send that finds both of a
    # thread's connections busy may open another, so a starved CPU can add a few.)
    assert 1 <= len(Stalling.peers) <= report["requests"] // 5


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.0.0.2:18080/",
        "http://localhost:8080",
        "http://[::1]:8080",
        "http://172.28.0.21:8001",
        "http://172.28.7.53",
    ],
)
def test_targets_loopback_and_the_lab_networks(url):
    host, port = loadgen.allowed_target(url)
    assert host and port in (80, 8001, 8080, 18080)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:8080",
        "http://172.29.0.1:8080",
        "http://192.168.1.10",
        "http://example.com",
        "https://127.0.0.1:8443",
        "http://127.0.0.1:notaport",
    ],
)
def test_refuses_any_other_target(url):
    with pytest.raises(SystemExit, match="refusing .*loopback.*172.28.0.0/16"):
        loadgen.allowed_target(url)


def test_the_report_keeps_what_callers_read_and_the_cli_accepts_their_options(app, tmp_path):
    out = tmp_path / "load.json"
    argv = [
        "--url",
        app,
        "--rate",
        "40",
        "--concurrency=8",
        "--duration",
        "0.5",
        "--stop-file",
        str(tmp_path / "stop"),
        "--report",
        str(out),
        "--mix",
        "GET /a:1",
        "--job-seconds",
        "1",
        "--job-prefix",
        "x",
        "--timeout",
        "5",
        "--seed",
        "2",
    ]
    assert loadgen.main(argv) == 0
    report = json.loads(out.read_text())
    # Read by molecule/cluster, molecule/app_contract and benchmarks/.
    for key in (
        "requests",
        "ok",
        "failed",
        "failures",
        "rps",
        "seconds",
        "instances",
        "failed_reads",
        "failed_writes",
        "write_outage_s",
        "error_samples",
    ):
        assert key in report
    assert set(report["latency_ms"]) == {"p50", "p90", "p99", "p999", "max"}
    assert set(report["service_ms"]) == set(report["latency_ms"])
    assert report["jobs"] == {"accepted": 0, "keys": []}
    assert report["instances"] == {"test:1": report["ok"]} and report["ok"] == 20


def test_the_stop_file_ends_the_schedule_early(app, tmp_path):
    stop = tmp_path / "stop"
    threading.Timer(0.5, stop.touch).start()
    report = run(
        {"url": app, "rate": 40.0, "duration": 30.0, "stop_file": str(stop), "mix": "GET /a:1"}
    )
    assert report["failed"] == 0 and 10 <= report["requests"] <= 40


class Paths(BaseHTTPRequestHandler):
    seen: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_n_in_a_path_is_a_number_no_other_request_of_the_run_uses():
    Paths.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Paths)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        report = run({"url": url, "rate": 50.0, "duration": 1.0, "mix": "GET /a?tag=miss-{n}:1"})
    finally:
        server.shutdown()
    assert report["ok"] == report["requests"] >= 49
    assert len(set(Paths.seen)) == len(Paths.seen) == report["requests"]
    assert all(p.startswith("/a?tag=miss-") and p[12:].isdigit() for p in Paths.seen)
