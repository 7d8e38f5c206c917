"""A Redis cache that never breaks a request.

Flask-Caching's RedisCache does the work; every call goes through SafeCache, which logs and
swallows Redis errors, and after an error skips the cache for a short pause so that a dead
cache costs one short socket timeout every few seconds, not one per request.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask
from flask_caching import Cache

from .config import Settings

log = logging.getLogger(__name__)

KEY_PREFIX = "flaskfleet:"
GENERATION_KEY = "articles:generation"
SOCKET_TIMEOUT = 0.25
PAUSE_AFTER_ERROR = 5.0


class SafeCache:
    def __init__(self, app: Flask, settings: Settings):
        self.timeout = settings.cache_timeout
        self.cache = Cache(
            app,
            config={
                "CACHE_TYPE": "RedisCache",
                "CACHE_REDIS_URL": settings.cache_url,
                "CACHE_KEY_PREFIX": KEY_PREFIX,
                "CACHE_DEFAULT_TIMEOUT": settings.cache_timeout,
                "CACHE_OPTIONS": {
                    "socket_timeout": SOCKET_TIMEOUT,
                    "socket_connect_timeout": SOCKET_TIMEOUT,
                    "health_check_interval": 30,
                },
            },
        )
        self._paused_until = 0.0
        self.errors = 0

    def _guard(self, op: str, fn, default: Any, force: bool = False) -> Any:
        if not force and time.monotonic() < self._paused_until:
            return default
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - any cache failure degrades to "no cache"
            self.errors += 1
            self._paused_until = time.monotonic() + PAUSE_AFTER_ERROR
            log.warning("cache %s failed (%s): serving without cache", op, type(exc).__name__)
            return default

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._paused_until

    def get(self, key: str) -> Any:
        return self._guard("get", lambda: self.cache.get(key), None)

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        return bool(
            self._guard("set", lambda: self.cache.set(key, value, timeout or self.timeout), False)
        )

    def delete(self, key: str) -> bool:
        return bool(self._guard("delete", lambda: self.cache.delete(key), False))

    def generation(self) -> int | None:
        """The articles generation counter; None when the cache is unavailable."""

        def _get():
            value = self.cache.cache._read_client.get(KEY_PREFIX + GENERATION_KEY)
            return int(value) if value is not None else 0

        return self._guard("generation", _get, None)

    def bump_generation(self) -> None:
        """Invalidate every cached article view (list pages and details) at once."""
        self._guard(
            "invalidate",
            lambda: self.cache.cache._write_client.incr(KEY_PREFIX + GENERATION_KEY),
            None,
            force=True,  # always try: a missed invalidation would serve stale data
        )

    def ping(self) -> None:
        """Raise if the cache does not answer (used by /readyz, not guarded)."""
        self.cache.cache._write_client.ping()
