"""/healthz (process alive, no I/O) and /readyz (every dependency answers, bounded time)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout

import redis
from flask import Blueprint, current_app, jsonify

from . import __version__

bp = Blueprint("health", __name__)

# Checks run here so a hung dependency can never hold a request past the deadline. Threads
# stuck on a dead server are bounded by the drivers' own connect/socket timeouts.
_EXECUTOR = ThreadPoolExecutor(max_workers=16, thread_name_prefix="readyz")


def _redis_check(url: str, timeout: float):
    client = redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
    )

    def check():
        try:
            client.ping()
        finally:
            client.close()

    return check


def _checks() -> dict:
    ext = current_app.extensions["flaskfleet"]
    settings = ext.settings
    db = ext.db
    timeout = settings.ready_timeout_ms / 1000.0
    checks = {"primary": lambda: db.ping(db.primary)}
    for replica in db.replicas:
        checks[replica.name] = lambda engine=replica.engine: db.ping(engine)
    checks["cache"] = _redis_check(settings.cache_url, timeout)
    checks["broker"] = _redis_check(settings.broker_url, timeout)
    return checks


def _scrub(message: str) -> str:
    ext = current_app.extensions["flaskfleet"]
    for secret in ext.settings.secrets():
        message = message.replace(secret, "***")
    return message.splitlines()[0][:300] if message else ""


def run_checks() -> tuple[bool, dict]:
    ext = current_app.extensions["flaskfleet"]
    deadline_s = ext.settings.ready_timeout_ms / 1000.0
    started = time.perf_counter()

    def timed(fn):
        t0 = time.perf_counter()
        server = fn()
        return (time.perf_counter() - t0) * 1000.0, server

    futures = {name: _EXECUTOR.submit(timed, fn) for name, fn in _checks().items()}
    wait(futures.values(), timeout=deadline_s)
    results = {}
    for name, fut in futures.items():
        if not fut.done():
            fut.cancel()
            results[name] = {
                "ok": False,
                "ms": round((time.perf_counter() - started) * 1000.0, 1),
                "error": f"timed out after {ext.settings.ready_timeout_ms} ms",
            }
            continue
        try:
            ms, server = fut.result(timeout=0)
            results[name] = {"ok": True, "ms": round(ms, 1), "error": None}
            if server:  # the database checks say which server answered
                results[name]["server"] = server
        except FutureTimeout:  # pragma: no cover - done() was checked
            results[name] = {"ok": False, "ms": None, "error": "timed out"}
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            results[name] = {
                "ok": False,
                "ms": round((time.perf_counter() - started) * 1000.0, 1),
                "error": f"{type(exc).__name__}: {_scrub(str(exc))}",
            }
    return all(r["ok"] for r in results.values()), results


@bp.get("/healthz")
def healthz():
    settings = current_app.extensions["flaskfleet"].settings
    return jsonify(status="ok", version=settings.release, instance=settings.instance)


@bp.get("/readyz")
def readyz():
    ok, results = run_checks()
    # {"status": "ok"|"unavailable", "<check>": {"ok": bool, "ms": float, "error": str|null}},
    # database checks that passed add "server": "host:port" (for "primary": the server of the
    # write URL that accepted writes, i.e. the current primary).
    body = {"status": "ok" if ok else "unavailable", **results}
    return jsonify(body), (200 if ok else 503)


@bp.get("/version")
def version():
    settings = current_app.extensions["flaskfleet"].settings
    return jsonify(release=settings.release, version=__version__, package="flaskfleet-app")
