#!/usr/bin/env python3
"""An open-loop load generator for flaskfleet: steady GETs and POSTs, every failure counted.

Open loop: request i is due at start + i/--rate and is sent at that time whether or not
the answers to earlier requests have come back. A stall of the service therefore piles up
requests in flight (each on its own thread and connection, up to --max-in-flight) instead
of slowing the generator down, and each request's latency is measured from the time it
was DUE, not from the time it went out. A closed-loop client (N threads that each wait for
their answer before sending again) does neither: during a stall it sends less, skips the
sends it missed, and times only the requests it managed to send, so the stall vanishes
from both the request count and the percentiles ("coordinated omission"). Here nothing
scheduled is dropped: a request that cannot go out because --max-in-flight requests are
already waiting is counted as the failure "not_sent_in_flight_limit".

Targets: http:// on a loopback address (the lab publishes the load balancer on 127.0.0.1)
or in the lab's own Docker networks, 172.28.0.0/16 (to hit a gunicorn instance directly);
anything else is refused. It stops scheduling after --duration seconds, --max-requests
requests or once --stop-file exists, waits for the requests in flight, and prints a JSON
report (also written to --report):

  requests (= scheduled: every request has an outcome), sent, ok, failed, failures by kind
  (http_<status>, connection_error, timeout, not_sent_in_flight_limit), latency_ms from
  the schedule (p50, p90, p99, p999, max; the requests that were sent), service_ms from
  the actual send, send_lag_ms (how late the generator itself sent), max_in_flight_seen,
  how many responses each app instance served (instances, from X-Served-By), failed reads
  and writes and the write outage, the accepted job keys, and a per-second timeline
  (by scheduled second: requests, failures, p99_ms, max_in_flight) for plots.

Connections: by default one connection per request ("Connection: close"), since a reload
of nginx closes idle keep-alive connections and a client racing that close sees an error
that says nothing about the service (browsers retry it). With --keepalive, HTTP/1.1
connections are reused (the most recently used first, up to --concurrency kept idle) and
new ones are opened when all are busy. --concurrency is also the number of sender
threads started up front; more are started, up to --max-in-flight, when all are busy.

Examples:
  python tools/loadgen.py --url http://127.0.0.1:8080 --rate 100 --duration 30
  python tools/loadgen.py --url http://127.0.0.1:8088 --mix "GET /api/articles:90,POST /api/jobs:10"
      # the load balancer's private listener: the sample's private paths (/api/jobs, /api/slow)
  python tools/loadgen.py --url http://127.0.0.1:8080 --stop-file /tmp/stop --duration 600
  python tools/loadgen.py --url http://172.28.0.21:8001 --rate 50 --duration 60  # one gunicorn
  python tools/loadgen.py --mix "GET /:60,GET /notes/{id}:25,POST /notes:15"   # another app

A POST sends {"title", "body", "author"} as JSON and remembers the "id" of the answer for
the paths with {id}; until one is known they fall back to the mix's first GET path.
{n} in a path is the request's own number (unique within the run), e.g. a cache key that
always misses: --mix "GET /api/articles?tag=miss-{n}:1".

Background jobs: a POST to /api/jobs (the sample app's job endpoint, e.g. --mix
"GET /api/articles:80,POST /api/articles:15,POST /api/jobs:5") sends a unique key
({"key": "<--job-prefix>-<n>", "seconds": --job-seconds}); the keys the app accepted go
into the report, and --check-jobs REPORT later asks /api/jobs/<key> for each of them
until every one has ended, and fails unless each was applied exactly once:

  python tools/loadgen.py --check-jobs report.json --url http://127.0.0.1:8080 --wait 300

The report separates failed reads (GET) from failed writes and gives the write outage:
the wall time from the scheduled start of the first failed write to the end of the last.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import queue
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

MIX = (
    # (weight, method, path) — a read-mostly mix with writes, like a real app.
    (50, "GET", "/api/articles"),
    (25, "GET", "/api/articles/{id}"),
    (10, "POST", "/api/articles"),
    (15, "GET", "/healthz"),
)
JOBS_PATH = "/api/jobs"
ENDED = ("applied", "failed")
# Where this machine may send traffic: loopback, and the lab's own Docker networks
# (the lab is 172.28.0.0/24, the molecule scenarios use 172.28.x.0/24).
LAB_NETWORKS = (ipaddress.ip_network("172.28.0.0/16"),)
NOT_SENT = "not_sent_in_flight_limit"
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))
MAX_IN_FLIGHT_BOUND = 4096
STOP_FILE_EVERY = 0.05  # seconds between looks for --stop-file


class Outcome(NamedTuple):
    """One scheduled request; times in seconds since the run started."""

    due: float
    sent: float | None  # None: never sent (in-flight limit)
    end: float
    kind: str  # "ok", http_<status>, connection_error, timeout, NOT_SENT
    method: str


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


def allowed_target(url: str) -> tuple[str, int]:
    """(host, port) of an http:// URL on loopback or the lab's networks; exits otherwise."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        address = ipaddress.ip_address(host)
        ok = address.is_loopback or any(address in net for net in LAB_NETWORKS)
    except ValueError:
        ok = host == "localhost"
    try:
        port = parts.port or 80
    except ValueError:
        ok = False
    if not ok or parts.scheme != "http":
        nets = ", ".join(str(net) for net in LAB_NETWORKS)
        sys.exit(
            f"loadgen: refusing {url!r}: only http:// to a loopback address (127.0.0.1) "
            f"or to the lab's Docker networks ({nets})"
        )
    return host, port


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def summary_ms(values: list[float]) -> dict[str, float]:
    """p50, p90, p99, p999 and max of durations in seconds, in milliseconds."""
    ordered = sorted(values)
    return {name: round(percentile(ordered, pct) * 1000, 1) for name, pct in PERCENTILES} | {
        "max": round((ordered[-1] if ordered else 0.0) * 1000, 1)
    }


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.host, self.port = allowed_target(args.url)
        if args.rate <= 0:
            raise SystemExit("loadgen: --rate must be > 0 (requests are sent on a schedule)")
        self.args = args
        self.max_in_flight = max(1, args.max_in_flight)
        self.idle_connections = max(1, min(args.concurrency, self.max_in_flight))
        self.lock = threading.Lock()
        self.all_answered = threading.Condition(self.lock)
        self.outcomes: list[Outcome] = []
        self.instances: Counter[str] = Counter()
        self.errors: list[str] = []
        self.ids: list[int] = []
        self.jobs: list[str] = []
        self.id_rng = random.Random(args.seed)
        # Sender threads: `idle` of them wait on `jobs_queue`; in_flight requests are out.
        self.jobs_queue: queue.SimpleQueue = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.idle = 0
        self.in_flight = 0
        self.max_in_flight_seen = 0
        self.in_flight_by_second: Counter[int] = Counter()
        self.pool: list[http.client.HTTPConnection] = []  # idle keep-alive connections
        self.started = time.monotonic()
        self.stop = threading.Event()
        mix = parse_mix(args.mix) if args.mix else MIX
        self.fallback = next((path for _, m, path in mix if m == "GET" and "{id}" not in path), "/")
        weights = [w for w, _, _ in mix]
        self.choices = random.Random(args.seed).choices(mix, weights=weights, k=100_000)

    # The schedule ------------------------------------------------------------------------

    def run(self) -> dict:
        args = self.args
        for _ in range(self.idle_connections):
            self.start_sender(None)
        started = self.started = time.monotonic()
        next_look = started
        i = 0
        while i < args.max_requests and i / args.rate < args.duration:
            due = started + i / args.rate
            # Wait for the due time in short naps, looking for the stop file meanwhile.
            while not self.stop.is_set():
                now = time.monotonic()
                if args.stop_file and now >= next_look:
                    next_look = now + STOP_FILE_EVERY
                    if Path(args.stop_file).exists():
                        self.stop.set()
                        break
                if now >= due:
                    break
                time.sleep(min(due - now, STOP_FILE_EVERY))
            if self.stop.is_set():
                break
            self.dispatch(i, due)
            i += 1
        with self.all_answered:
            while self.in_flight:
                self.all_answered.wait()
        elapsed = time.monotonic() - started
        for _ in self.threads:
            self.jobs_queue.put(None)
        for t in self.threads:
            t.join()
        for conn in self.pool:
            conn.close()
        return self.report(elapsed)

    def dispatch(self, i: int, due: float) -> None:
        """Hand request i to an idle sender, a new one, or count it as not sent."""
        with self.lock:
            if self.in_flight >= self.max_in_flight:
                _, method, _ = self.choices[(i + 1) % len(self.choices)]
                now = time.monotonic() - self.started
                self.outcomes.append(Outcome(due - self.started, None, now, NOT_SENT, method))
                if len(self.errors) < 20:
                    self.errors.append(f"request {i + 1} not sent: {self.in_flight} in flight")
                return
            self.in_flight += 1
            self.max_in_flight_seen = max(self.max_in_flight_seen, self.in_flight)
            second = int(due - self.started)
            self.in_flight_by_second[second] = max(self.in_flight_by_second[second], self.in_flight)
            reuse = self.idle > 0
            if reuse:
                self.idle -= 1  # reserved: that sender takes the next item of the queue
        if reuse:
            self.jobs_queue.put((i, due))
        else:
            self.start_sender((i, due))

    def start_sender(self, first: tuple[int, float] | None) -> None:
        t = threading.Thread(target=self.sender, args=(first,), daemon=True)
        self.threads.append(t)
        t.start()

    def sender(self, job: tuple[int, float] | None) -> None:
        while True:
            if job is None:
                with self.lock:
                    self.idle += 1
                job = self.jobs_queue.get()
                if job is None:
                    return
            try:
                self.one(*job)
            finally:
                with self.lock:
                    self.in_flight -= 1
                    if not self.in_flight:
                        self.all_answered.notify_all()
            job = None

    # One request --------------------------------------------------------------------------

    def connection(self) -> http.client.HTTPConnection:
        if self.args.keepalive:
            with self.lock:
                if self.pool:
                    return self.pool.pop()  # the most recently used: the least likely stale
        return http.client.HTTPConnection(self.host, self.port, timeout=self.args.timeout)

    def release(self, conn: http.client.HTTPConnection, reusable: bool) -> None:
        if reusable and self.args.keepalive:
            with self.lock:
                if len(self.pool) < self.idle_connections:
                    self.pool.append(conn)
                    return
        conn.close()

    def record(
        self,
        due: float,
        sent: float,
        kind: str,
        method: str,
        instance: str | None = None,
        detail: str = "",
    ) -> None:
        end = time.monotonic()
        with self.lock:
            self.outcomes.append(
                Outcome(due - self.started, sent - self.started, end - self.started, kind, method)
            )
            if instance:
                self.instances[instance] += 1
            if detail and len(self.errors) < 20:
                self.errors.append(detail)

    def one(self, i: int, due: float) -> None:
        n = i + 1
        _, method, path = self.choices[n % len(self.choices)]
        body = None
        headers = {"Accept": "application/json"}
        if not self.args.keepalive:
            # A fresh connection per request: a reload of nginx closes idle
            # keep-alive connections, and a client racing that close would see
            # an error that says nothing about the service (browsers retry it).
            headers["Connection"] = "close"
        # {n}: this request's number, a key no other request uses (e.g. a cache key that
        # always misses: "GET /api/articles?tag=bench-{n}").
        path = path.replace("{n}", str(n))
        if "{id}" in path:
            with self.lock:
                ident = self.id_rng.choice(self.ids) if self.ids else None
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
        conn = self.connection()
        sent = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except TimeoutError:
            conn.close()
            self.record(due, sent, "timeout", method, detail=f"{method} {path}: timeout")
            return
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            detail = f"{method} {path}: {exc!r}"
            self.record(due, sent, "connection_error", method, detail=detail)
            return
        instance = resp.getheader("X-Served-By")
        self.release(conn, not resp.will_close)
        if not 200 <= resp.status < 300:
            detail = f"{method} {path} -> {resp.status}"
            self.record(due, sent, f"http_{resp.status}", method, instance, detail)
            return
        self.record(due, sent, "ok", method, instance)
        if job:
            with self.lock:
                self.jobs.append(job)
        elif method == "POST":
            try:
                new_id = json.loads(data).get("id")
            except (ValueError, AttributeError):
                new_id = None
            if new_id:
                with self.lock:
                    self.ids.append(new_id)

    # The report ---------------------------------------------------------------------------

    def report(self, elapsed: float) -> dict:
        outcomes = sorted(self.outcomes, key=lambda o: o.due)
        sent = [o for o in outcomes if o.sent is not None]
        results = Counter(o.kind for o in outcomes)
        failures = {k: v for k, v in sorted(results.items()) if k != "ok"}
        total = len(outcomes)
        return (
            {
                "target": self.args.url,
                "open_loop": True,
                "rate": self.args.rate,
                "seconds": round(elapsed, 2),
                "requests": total,
                "scheduled": total,
                "sent": len(sent),
                "ok": results.get("ok", 0),
                "failed": sum(failures.values()),
                "failures": failures,
                "rps": round(total / elapsed, 1) if elapsed else 0.0,
                # From the time each request was due: what a user arriving then waited.
                "latency_ms": summary_ms([o.end - o.due for o in sent]),
                # From the time it actually went out (hides waits before the send).
                "service_ms": summary_ms([o.end - o.sent for o in sent]),
                "send_lag_ms": summary_ms([o.sent - o.due for o in sent]),
                "max_in_flight": self.max_in_flight,
                "max_in_flight_seen": self.max_in_flight_seen,
                "instances": dict(sorted(self.instances.items())),
                "error_samples": self.errors,
            }
            | outage([(o.due, o.end, o.method) for o in outcomes if o.kind != "ok"])
            | {"jobs": {"accepted": len(self.jobs), "keys": self.jobs}}
            | {"timeline": timeline(outcomes, self.in_flight_by_second)}
        )


def timeline(outcomes: list[Outcome], in_flight_by_second: Counter[int]) -> dict:
    """Per second of the schedule: requests due, failures, p99 latency (from the schedule, of
    the requests sent) and the most requests in flight; lists indexed by second."""
    seconds = int(max((o.due for o in outcomes), default=-1)) + 1
    due: list[list[Outcome]] = [[] for _ in range(seconds)]
    for o in outcomes:
        due[int(o.due)].append(o)
    return {
        "interval_s": 1,
        "requests": [len(b) for b in due],
        "failures": [sum(1 for o in b if o.kind != "ok") for b in due],
        "p99_ms": [
            round(percentile(sorted(o.end - o.due for o in b if o.sent is not None), 99) * 1000, 1)
            for b in due
        ],
        "max_in_flight": [in_flight_by_second.get(s, 0) for s in range(seconds)],
    }


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


def dumps(report: dict) -> str:
    """The report as indented JSON, with each timeline list on one line."""
    if "timeline" not in report:
        return json.dumps(report, indent=2)
    marker = '"@timeline@"'
    text = json.dumps(report | {"timeline": "@timeline@"}, indent=2)
    series = ",\n    ".join(
        f"{json.dumps(k)}: {json.dumps(v)}" for k, v in report["timeline"].items()
    )
    return text.replace(marker, "{\n    " + series + "\n  }", 1)


def check_jobs(args: argparse.Namespace) -> dict:
    """Ask the app for every job the load run had accepted, until each has ended (or --wait)."""
    host, port = allowed_target(args.url)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--url",
        default="http://127.0.0.1:8080",
        help="load balancer or instance (loopback or the lab's 172.28.0.0/16 only)",
    )
    p.add_argument("--rate", type=float, default=100.0, help="requests per second, on schedule")
    p.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="sender threads started up front, and idle keep-alive connections kept",
    )
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=512,
        help="most requests out at once; a request due beyond it is a failure, not sent",
    )
    p.add_argument("--duration", type=float, default=30.0, help="schedule for this many seconds")
    p.add_argument("--max-requests", type=int, default=200_000, help="schedule at most this many")
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
        help="reuse HTTP/1.1 connections (default: one connection per request)",
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
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
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
    if args.rate <= 0:
        p.error("--rate must be > 0: requests are sent on a fixed schedule")
    if not 1 <= args.max_in_flight <= MAX_IN_FLIGHT_BOUND:
        p.error(f"bounded by design: 1 <= --max-in-flight <= {MAX_IN_FLIGHT_BOUND}")
    if not 1 <= args.concurrency <= args.max_in_flight:
        p.error("--concurrency must be between 1 and --max-in-flight")
    report = Load(args).run()
    text = dumps(report)
    print(text)
    if args.report:
        Path(args.report).write_text(text)
    return 0 if report["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
