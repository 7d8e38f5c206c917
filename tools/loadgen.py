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

    def record(self, kind: str, latency: float, instance: str | None, detail: str = "") -> None:
        with self.lock:
            self.results[kind] += 1
            self.latencies.append(latency)
            if instance:
                self.instances[instance] += 1
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
        if method == "POST":
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
                if method == "POST":
                    try:
                        new_id = json.loads(data).get("id")
                    except ValueError:
                        new_id = None
                    if new_id:
                        with self.lock:
                            self.ids.append(new_id)
            else:
                self.record(
                    f"http_{resp.status}", latency, instance, f"{method} {path} -> {resp.status}"
                )
            if not self.args.keepalive or resp.getheader("Connection", "").lower() == "close":
                conn.close()
        except TimeoutError:
            self.record("timeout", time.monotonic() - start, None, f"{method} {path}: timeout")
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            kind = "connection_error"
            self.record(kind, time.monotonic() - start, None, f"{method} {path}: {exc!r}")
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
        started = time.monotonic()
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
        return {
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
    args = p.parse_args(argv)
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
