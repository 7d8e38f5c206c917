"""Settings from environment variables only (the roles render a systemd EnvironmentFile).

Every problem is collected and reported at once, naming the variable and what is expected.
Values of secret variables (URLs carry passwords, the secret key) are never echoed.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ._version import __version__

PREFIX = "FLASKFLEET_"
# Seconds the broker's visibility timeout adds to the task time limit by default.
VISIBILITY_MARGIN = 60


def visibility_timeout_for(task_time_limit: int) -> int:
    """The default visibility timeout: the task time limit plus VISIBILITY_MARGIN seconds."""
    return task_time_limit + VISIBILITY_MARGIN


class ConfigError(Exception):
    """Raised when the environment does not describe a usable configuration."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Settings:
    database_url: str
    cache_url: str
    broker_url: str
    result_backend: str
    secret_key: str = field(repr=False)
    replica_urls: tuple[str, ...] = ()
    release: str = __version__
    instance: str = ""
    db_pool_size: int = 5
    db_max_overflow: int = 5
    db_pool_recycle: int = 1800
    db_pool_pre_ping: bool = True
    db_connect_timeout: int = 3
    cache_timeout: int = 60
    slow_default_ms: int = 200
    slow_max_ms: int = 5000
    trusted_proxies: int = 1
    max_content_length: int = 1024 * 1024
    task_time_limit: int = 300
    task_soft_time_limit: int = 270
    visibility_timeout: int = 360
    task_retries: int = 10
    task_retry_base: float = 2.0
    task_retry_max_delay: float = 30.0
    ready_timeout_ms: int = 800
    replica_retry_seconds: float = 10.0
    beat_interval: float = 30.0
    ryw_seconds: int = 10
    prometheus_multiproc_dir: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        p = _Parser(env)

        database_url = p.pg_url("DATABASE_URL", required=True)
        replica_urls = p.pg_url_list("REPLICA_URLS")
        cache_url = p.redis_url("CACHE_URL", required=True)
        broker_url = p.redis_url("BROKER_URL", required=True)
        result_backend = p.redis_url("RESULT_BACKEND", required=False)
        if not result_backend and broker_url:
            result_backend = _with_redis_db(broker_url, 1)
        secret_key = p.raw("SECRET_KEY")
        if not secret_key:
            p.problems.append(
                "FLASKFLEET_SECRET_KEY is required: a random string of at least 16 characters"
            )
        elif len(secret_key) < 16:
            p.problems.append(
                f"FLASKFLEET_SECRET_KEY is too short ({len(secret_key)} characters): "
                "expected at least 16 characters"
            )

        task_time_limit = p.integer("TASK_TIME_LIMIT", 300, minimum=1)
        soft_default = max(1, task_time_limit - max(1, task_time_limit // 10))
        task_soft_time_limit = p.integer("TASK_SOFT_TIME_LIMIT", soft_default, minimum=1)
        # A message is unacknowledged while its task runs (at most the time limit) and while a
        # retry waits for its countdown (at most TASK_RETRY_MAX_DELAY, under a minute): the
        # broker may redeliver it after that, not after Celery's default hour.
        visibility_timeout = p.integer(
            "VISIBILITY_TIMEOUT", visibility_timeout_for(task_time_limit), minimum=1
        )
        task_retries = p.integer("TASK_RETRIES", 10, minimum=0, maximum=100)
        task_retry_base = p.number("TASK_RETRY_BASE", 2.0, minimum=0)
        task_retry_max_delay = p.number("TASK_RETRY_MAX_DELAY", 30.0, minimum=0)
        if task_retry_max_delay >= VISIBILITY_MARGIN:
            p.problems.append(
                f"FLASKFLEET_TASK_RETRY_MAX_DELAY ({task_retry_max_delay}s) must be below "
                f"{VISIBILITY_MARGIN}s: a retry waiting longer than the margin of the "
                "visibility timeout would be redelivered while it waits"
            )
        if task_soft_time_limit > task_time_limit:
            p.problems.append(
                f"FLASKFLEET_TASK_SOFT_TIME_LIMIT ({task_soft_time_limit}) must not exceed "
                f"FLASKFLEET_TASK_TIME_LIMIT ({task_time_limit})"
            )
        if visibility_timeout <= task_time_limit:
            p.problems.append(
                f"FLASKFLEET_VISIBILITY_TIMEOUT ({visibility_timeout}s) must be greater than "
                f"FLASKFLEET_TASK_TIME_LIMIT ({task_time_limit}s), otherwise the broker "
                "redelivers tasks that are still running"
            )

        slow_default_ms = p.integer("SLOW_DEFAULT_MS", 200, minimum=0, maximum=5000)
        settings = dict(
            database_url=database_url or "",
            replica_urls=tuple(replica_urls),
            cache_url=cache_url or "",
            broker_url=broker_url or "",
            result_backend=result_backend or "",
            secret_key=secret_key or "",
            release=p.raw("RELEASE") or __version__,
            instance=p.raw("INSTANCE") or f"{socket.gethostname()}:{os.getpid()}",
            db_pool_size=p.integer("DB_POOL_SIZE", 5, minimum=1),
            db_max_overflow=p.integer("DB_MAX_OVERFLOW", 5, minimum=0),
            db_pool_recycle=p.integer("DB_POOL_RECYCLE", 1800, minimum=-1),
            db_pool_pre_ping=p.boolean("DB_POOL_PRE_PING", True),
            db_connect_timeout=p.integer("DB_CONNECT_TIMEOUT", 3, minimum=1, maximum=60),
            cache_timeout=p.integer("CACHE_TIMEOUT", 60, minimum=1),
            slow_default_ms=slow_default_ms,
            trusted_proxies=p.integer("TRUSTED_PROXIES", 1, minimum=0, maximum=10),
            max_content_length=p.integer("MAX_CONTENT_LENGTH", 1024 * 1024, minimum=1024),
            task_time_limit=task_time_limit,
            task_soft_time_limit=task_soft_time_limit,
            visibility_timeout=visibility_timeout,
            task_retries=task_retries,
            task_retry_base=task_retry_base,
            task_retry_max_delay=task_retry_max_delay,
            ready_timeout_ms=p.integer("READY_TIMEOUT_MS", 800, minimum=50, maximum=5000),
            replica_retry_seconds=p.number("REPLICA_RETRY_SECONDS", 10.0, minimum=0),
            beat_interval=p.number("BEAT_INTERVAL", 30.0, minimum=0.5),
            ryw_seconds=p.integer("RYW_SECONDS", 10, minimum=1, maximum=3600),
            prometheus_multiproc_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        )
        mp = settings["prometheus_multiproc_dir"]
        if mp and not os.path.isdir(mp):
            p.problems.append(
                f"PROMETHEUS_MULTIPROC_DIR={mp} is not an existing directory: create it "
                "(writable by the app user, emptied at service start) or unset it"
            )
        if p.problems:
            raise ConfigError(p.problems)
        return cls(**settings)

    def redacted(self) -> dict[str, object]:
        """A printable summary without secrets."""
        return {
            "database_url": redact_url(self.database_url),
            "replica_urls": [redact_url(u) for u in self.replica_urls],
            "cache_url": redact_url(self.cache_url),
            "broker_url": redact_url(self.broker_url),
            "result_backend": redact_url(self.result_backend),
            "secret_key": "***",
            "release": self.release,
            "instance": self.instance,
            "db_pool_size": self.db_pool_size,
            "db_max_overflow": self.db_max_overflow,
            "db_pool_recycle": self.db_pool_recycle,
            "db_pool_pre_ping": self.db_pool_pre_ping,
            "db_connect_timeout": self.db_connect_timeout,
            "cache_timeout": self.cache_timeout,
            "slow_default_ms": self.slow_default_ms,
            "trusted_proxies": self.trusted_proxies,
            "max_content_length": self.max_content_length,
            "task_time_limit": self.task_time_limit,
            "task_soft_time_limit": self.task_soft_time_limit,
            "visibility_timeout": self.visibility_timeout,
            "task_retries": self.task_retries,
            "task_retry_base": self.task_retry_base,
            "task_retry_max_delay": self.task_retry_max_delay,
            "ready_timeout_ms": self.ready_timeout_ms,
            "replica_retry_seconds": self.replica_retry_seconds,
            "beat_interval": self.beat_interval,
            "ryw_seconds": self.ryw_seconds,
            "prometheus_multiproc_dir": self.prometheus_multiproc_dir,
        }

    def secrets(self) -> list[str]:
        """Every secret value, so error messages can be scrubbed of them."""
        out = [self.secret_key]
        for url in (
            self.database_url,
            self.cache_url,
            self.broker_url,
            self.result_backend,
            *self.replica_urls,
        ):
            pw = urlsplit(url).password if url else None
            if pw:
                out.append(pw)
        return [s for s in out if s]


def url_servers(url: str) -> list[str]:
    """The servers of a PostgreSQL URL as ``host:port``, in the order libpq tries them.

    A multi-host URL names them as repeated ``host=`` query parameters
    (``postgresql+psycopg://user:pw@/db?host=a:5432&host=b:5432&target_session_attrs=read-write``).
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return []
    if parsed.host:
        return [f"{parsed.host}:{parsed.port or 5432}"]
    hosts = parsed.query.get("host") or ()
    hosts = (hosts,) if isinstance(hosts, str) else hosts
    return [h if h.rpartition(":")[2].isdigit() else f"{h}:5432" for h in hosts if h]


def redact_url(url: str) -> str:
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


class _Parser:
    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(PREFIX + name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def integer(self, name: str, default: int, minimum: int | None = None, maximum=None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            self.problems.append(f"{PREFIX}{name}={value!r} is not an integer")
            return default
        if minimum is not None and number < minimum:
            self.problems.append(f"{PREFIX}{name}={number} is too small: expected >= {minimum}")
        if maximum is not None and number > maximum:
            self.problems.append(f"{PREFIX}{name}={number} is too large: expected <= {maximum}")
        return number

    def number(self, name: str, default: float, minimum: float | None = None) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            self.problems.append(f"{PREFIX}{name}={value!r} is not a number")
            return default
        if minimum is not None and number < minimum:
            self.problems.append(f"{PREFIX}{name}={number} is too small: expected >= {minimum}")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{PREFIX}{name}={value!r} is not a boolean: expected true or false")
        return default

    def _check_pg(self, name: str, url: str) -> bool:
        expected = (
            "expected a SQLAlchemy PostgreSQL URL like "
            "postgresql+psycopg://user:password@host:5432/dbname or, over several servers, "
            "postgresql+psycopg://user:password@/dbname?host=a:5432&host=b:5432"
        )
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError):
            self.problems.append(f"{name} is malformed: {expected}")
            return False
        if parsed.get_backend_name() != "postgresql":
            self.problems.append(f"{name} uses backend {parsed.get_backend_name()!r}: {expected}")
            return False
        if parsed.get_driver_name() not in ("psycopg",):
            self.problems.append(
                f"{name} uses driver {parsed.get_driver_name()!r}: "
                "use postgresql+psycopg:// (psycopg 3 is the installed driver)"
            )
            return False
        if not url_servers(url) or not parsed.database:
            self.problems.append(f"{name} lacks a host or database name: {expected}")
            return False
        return True

    def pg_url(self, name: str, required: bool) -> str | None:
        value = self.raw(name)
        if value is None:
            if required:
                self.problems.append(
                    f"{PREFIX}{name} is required: the primary database, e.g. "
                    "postgresql+psycopg://user:password@host:5432/dbname"
                )
            return None
        return value if self._check_pg(PREFIX + name, value) else None

    def pg_url_list(self, name: str) -> list[str]:
        value = self.raw(name)
        if value is None:
            return []
        urls = []
        for i, item in enumerate(u.strip() for u in value.split(",")):
            if not item:
                continue
            if self._check_pg(f"{PREFIX}{name} (item {i + 1})", item):
                urls.append(item)
        return urls

    def redis_url(self, name: str, required: bool) -> str | None:
        value = self.raw(name)
        expected = "expected a Redis URL like redis://:password@host:6379/0"
        if value is None:
            if required:
                self.problems.append(f"{PREFIX}{name} is required: {expected}")
            return None
        try:
            parts = urlsplit(value)
            port = parts.port
            path = parts.path.strip("/")
        except ValueError:
            self.problems.append(f"{PREFIX}{name} is malformed: {expected}")
            return None
        if parts.scheme not in ("redis", "rediss"):
            self.problems.append(
                f"{PREFIX}{name} has scheme {parts.scheme!r}: {expected} (or rediss://)"
            )
            return None
        if not parts.hostname:
            self.problems.append(f"{PREFIX}{name} lacks a host: {expected}")
            return None
        if path and not path.isdigit():
            self.problems.append(
                f"{PREFIX}{name} database must be a number (got path /{path}): {expected}"
            )
            return None
        del port
        return value
