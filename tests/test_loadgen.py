"""tools/loadgen.py: what the failover proof relies on — failed reads and writes told
apart, the write outage window, and every accepted job accounted for."""

from __future__ import annotations

import importlib.util
import json
import threading
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


def run(argv):
    parser_args = loadgen.argparse.Namespace(
        **{
            "url": "",
            "rate": 100.0,
            "concurrency": 4,
            "duration": 1.0,
            "max_requests": 1000,
            "timeout": 5.0,
            "stop_file": None,
            "report": None,
            "seed": 1,
            "mix": None,
            "keepalive": False,
            "job_prefix": "t",
            "job_seconds": 1.0,
        }
        | argv
    )
    return loadgen.Load(parser_args).run()


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
