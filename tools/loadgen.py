#!/usr/bin/env python3
"""A bounded load generator for flaskfleet: steady GETs and POSTs, every failure counted.

It only targets loopback addresses (the lab publishes the load balancer on
127.0.0.1), stops after --duration seconds or --max-requests requests,
whichever comes first, and prints a JSON report:

  requests, ok, failures by kind (HTTP status, connection error, timeout),
  latency percentiles, and how many responses each app instance served
  (the X-Served-By header).

Examples:
  python tools/loadgen.py --url http://127.0.0.1:8080 --rate 100 --duration 30
  python tools/loadgen.py --url http://127.0.0.1:8080 --stop-file /tmp/stop --duration 600
  python tools/loadgen.py --mix "GET /:60,GET /notes/{id}:25,POST /notes:15"   # another app

A POST sends {"title", "body", "author"} as JSON and remembers the "id" of the answer for
the paths with {id}; until one is known they fall back to the mix's first GET path.

Background jobs: a POST to /api/jobs (the sample app's job endpoint, e.g. --mix
"GET /api/articles:80,POST /api/articles:15,POST /api/jobs:5") sends a unique key
({"key": "<--job-prefix>-<n>", "seconds": --job-seconds}); the keys the app accepted go
into the report, and --check-jobs REPORT later asks /api/jobs/<key> for each of them
until every one has ended, and fails unless each was applied exactly once:

  python tools/loadgen.py --check-jobs report.json --url http://127.0.0.1:8080 --wait 300

The report separates failed reads (GET) from failed writes and gives the write outage:
the wall time from the start of the first failed write to the end of the last one.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

MIX = (
    # (weight, method, path) — a read-mostly mix with writes, like a real app.
    (50, "GET", "/api/articles"),
    (25, "GET", "/api/articles/{id}"),
    (10, "POST", "/api/articles"),
    (10, "GET", "/healthz"),
    (5, "GET", "/api/slow?ms=20"),
)
JOBS_PATH = "/api/jobs"
ENDED = ("applied", "failed")


def parse_mix(text: str) -> tuple[tuple[int, str, str], ...]:
    """ "GET /:60,POST /notes:20" -> ((60, "GET", "/"), (20, "POST", "/notes"))."""
    mix = []
    for item in text.split(","):
        request, _, weight = item.strip().rpartition(":")
        method, _, path = request.strip().partition(" ")
        if method not in ("GET", "POST") or not path.startswith("/") or not weight.isdigit():
            raise SystemExit(f"loadgen: bad --mix entry {item!r}: use 'METHOD /path:weight'")
        mix.append((int(weight), method, path.strip()))
    return tuple(mix)


def loopback_only(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok or parts.scheme != "http":
        sys.exit(f"loadgen: refusing {url!r}: only http:// on a loopback address (127.0.0.1)")
    return host, parts.port or 80


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.host, self.port = loopback_only(args.url)
        self.args = args
        self.lock = threading.Lock()
        self.sent = 0
        self.results: Counter[str] = Counter()
        self.instances: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.ids: list[int] = []
        self.jobs: list[str] = []
        # (start, end, method) of every failed request, seconds since the run started.
        self.failed_at: list[tuple[float, float, str]] = []
        self.started = time.monotonic()
        self.stop = threading.Event()
        self.deadline = time.monotonic() + args.duration
        mix = parse_mix(args.mix) if args.mix else MIX
        self.fallback = next((path for _, m, path in mix if m == "GET" and "{id}" not in path), "/")
        weights = [w for w, _, _ in mix]
        self.choices = random.Random(args.seed).choices(mix, weights=weights, k=100_000)

    def take_ticket(self) -> int | None:
        with self.lock:
            if self.sent >= self.args.max_requests:
                return None
            self.sent += 1
            return self.sent

    def record(
        self, kind: str, latency: float, instance: str | None, detail: str = "", method: str = ""
    ) -> None:
        with self.lock:
            self.results[kind] += 1
            self.latencies.append(latency)
            if instance:
                self.instances[instance] += 1
            if kind != "ok":
                end = time.monotonic() - self.started
                self.failed_at.append((end - latency, end, method))
            if detail and len(self.errors) < 20:
                self.errors.append(detail)

    def one(self, conn: http.client.HTTPConnection, n: int) -> http.client.HTTPConnection:
        _, method, path = self.choices[n % len(self.choices)]
        body = None
        headers = {"Accept": "application/json"}
        if not self.args.keepalive:
            # A fresh connection per request: a reload of nginx closes idle
            # keep-alive connections, and a client racing that close would see
            # an error that says nothing about the service (browsers retry it).
            headers["Connection"] = "close"
        if "{id}" in path:
            with self.lock:
                ident = random.choice(self.ids) if self.ids else None
            path = path.format(id=ident) if ident else self.fallback
        job = f"{self.args.job_prefix}-{n}" if method == "POST" and path == JOBS_PATH else None
        if job:
            body = json.dumps({"key": job, "seconds": self.args.job_seconds})
            headers["Content-Type"] = "application/json"
        elif method == "POST":
            body = json.dumps(
                {"title": f"load {n}", "body": "steady load " * 20, "author": "loadgen"}
            )
            headers["Content-Type"] = "application/json"
        start = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            latency = time.monotonic() - start
            instance = resp.getheader("X-Served-By")
            if 200 <= resp.status < 300:
                self.record("ok", latency, instance)
                if job:
                    with self.lock:
                        self.jobs.append(job)
                elif method == "POST":
                    try:
                        new_id = json.loads(data).get("id")
                    except ValueError:
                        new_id = None
                    if new_id:
                        with self.lock:
                            self.ids.append(new_id)
            else:
                self.record(
                    f"http_{resp.status}",
                    latency,
                    instance,
                    f"{method} {path} -> {resp.status}",
                    method,
                )
            if not self.args.keepalive or resp.getheader("Connection", "").lower() == "close":
                conn.close()
        except TimeoutError:
            self.record(
                "timeout", time.monotonic() - start, None, f"{method} {path}: timeout", method
            )
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            kind = "connection_error"
            self.record(kind, time.monotonic() - start, None, f"{method} {path}: {exc!r}", method)
            conn.close()
        return conn

    def worker(self, index: int) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.args.timeout)
        interval = self.args.concurrency / self.args.rate if self.args.rate > 0 else 0.0
        next_at = time.monotonic() + random.random() * interval
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            if self.args.stop_file and Path(self.args.stop_file).exists():
                break
            n = self.take_ticket()
            if n is None:
                break
            conn = self.one(conn, n)
            if interval:
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_at = time.monotonic()
        conn.close()

    def run(self) -> dict:
        started = self.started = time.monotonic()
        threads = [
            threading.Thread(target=self.worker, args=(i,), daemon=True)
            for i in range(self.args.concurrency)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        lat = sorted(self.latencies)
        total = sum(self.results.values())
        failures = {k: v for k, v in self.results.items() if k != "ok"}
        return (
            {
                "target": self.args.url,
                "seconds": round(elapsed, 2),
                "requests": total,
                "ok": self.results.get("ok", 0),
                "failed": sum(failures.values()),
                "failures": failures,
                "rps": round(total / elapsed, 1) if elapsed else 0.0,
                "latency_ms": {
                    p: round(percentile(lat, float(p[1:])) * 1000, 1) for p in ("p50", "p90", "p99")
                }
                | {"max": round((lat[-1] if lat else 0) * 1000, 1)},
                "instances": dict(sorted(self.instances.items())),
                "error_samples": self.errors,
            }
            | outage(self.failed_at)
            | {"jobs": {"accepted": len(self.jobs), "keys": self.jobs}}
        )


def outage(failed_at: list[tuple[float, float, str]]) -> dict:
    """Failed reads and writes, and the write outage: first failed write's start to last's end."""
    writes = [(start, end) for start, end, method in failed_at if method not in ("GET", "")]
    return {
        "failed_reads": sum(1 for *_, method in failed_at if method == "GET"),
        "failed_writes": len(writes),
        "write_outage_s": round(max(e for _, e in writes) - min(s for s, _ in writes), 2)
        if writes
        else 0.0,
    }


def check_jobs(args: argparse.Namespace) -> dict:
    """Ask the app for every job the load run had accepted, until each has ended (or --wait)."""
    host, port = loopback_only(args.url)
    keys = json.loads(Path(args.check_jobs).read_text()).get("jobs", {}).get("keys", [])
    status: dict[str, dict] = {}
    deadline = time.monotonic() + args.wait

    def state(key: str) -> str | None:
        return status.get(key, {}).get("status")

    while True:
        for key in keys:
            if state(key) in ENDED:
                continue
            conn = http.client.HTTPConnection(host, port, timeout=args.timeout)
            try:
                conn.request("GET", f"{JOBS_PATH}/{key}", headers={"Accept": "application/json"})
                resp = conn.getresponse()
                body = resp.read()
                if resp.status == 200:
                    status[key] = json.loads(body)
            except (OSError, http.client.HTTPException, ValueError):
                pass  # asked again on the next round
            finally:
                conn.close()
        open_keys = [k for k in keys if state(k) not in ENDED]
        if not open_keys or time.monotonic() >= deadline:
            break
        time.sleep(2)
    applied_once = [k for k in keys if state(k) == "applied" and status[k]["effects"] == 1]
    failed = [k for k in keys if state(k) == "failed"]
    return {
        "accepted": len(keys),
        "applied_once": len(applied_once),
        "failed": failed,
        "not_ended": open_keys,
        "executions": sum(status.get(k, {}).get("executions", 0) for k in keys),
        "lost": len(keys) - len(applied_once),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080", help="load balancer (loopback only)")
    p.add_argument("--rate", type=float, default=100.0, help="requests per second in total")
    p.add_argument("--concurrency", type=int, default=8, help="connections (threads)")
    p.add_argument("--duration", type=float, default=30.0, help="stop after this many seconds")
    p.add_argument("--max-requests", type=int, default=200_000, help="stop after this many")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    p.add_argument("--stop-file", help="stop early once this file exists")
    p.add_argument("--report", help="also write the JSON report to this file")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--mix",
        help='requests to send, "METHOD /path:weight,..." (default: the sample app\'s mix)',
    )
    p.add_argument(
        "--keepalive",
        action="store_true",
        help="reuse connections (default: one connection per request)",
    )
    p.add_argument(
        "--job-prefix",
        default=f"loadgen-{int(time.time())}",
        help="job keys are <prefix>-<n> (POST /api/jobs in the mix)",
    )
    p.add_argument("--job-seconds", type=float, default=1.0, help="how long each job runs")
    p.add_argument(
        "--check-jobs",
        metavar="REPORT",
        help="instead of sending load: account for every job a load REPORT had accepted",
    )
    p.add_argument("--wait", type=float, default=300.0, help="--check-jobs: seconds to wait")
    args = p.parse_args(argv)
    if args.check_jobs:
        result = check_jobs(args)
        text = json.dumps(result, indent=2)
        print(text)
        if args.report:
            Path(args.report).write_text(text)
        return 0 if result["lost"] == 0 else 1
    if args.duration > 3600 or args.max_requests > 1_000_000:
        p.error("bounded by design: --duration <= 3600, --max-requests <= 1000000")
    report = Load(args).run()
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        Path(args.report).write_text(text)
    return 0 if report["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
