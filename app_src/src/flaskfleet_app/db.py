"""Engines and the read/write split.

Writes always go to the primary. FLASKFLEET_DATABASE_URL may name several servers
(``?host=a:5432&host=b:5432&target_session_attrs=read-write``): libpq connects to the first
one that accepts writes, so after a promotion new connections reach the new primary and
pooled ones to the old server are dropped by the pre-ping.

Reads go round-robin to the replicas (FLASKFLEET_REPLICA_URLS, one server each) that are not
in their circuit-breaker pause; a replica that fails to answer is paused for
FLASKFLEET_REPLICA_RETRY_SECONDS and the read is retried on the next replica, then on the
primary (the write URL: whichever server accepts writes).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from .config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def make_engine(url: str, settings: Settings, name: str) -> Engine:
    connect_args: dict[str, object] = {"application_name": f"flaskfleet-{name}"}
    # connect_args win over the URL's query: a connect_timeout the URL sets (the topology
    # sets one per URL) is kept, FLASKFLEET_DB_CONNECT_TIMEOUT is the fallback.
    if "connect_timeout" not in make_url(url).query:
        connect_args["connect_timeout"] = settings.db_connect_timeout
    return create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=settings.db_pool_recycle,
        pool_pre_ping=settings.db_pool_pre_ping,
        pool_timeout=10,
        connect_args=connect_args,
    )


@dataclass
class Replica:
    name: str
    engine: Engine
    down_until: float = 0.0

    def available(self, now: float) -> bool:
        return now >= self.down_until


class Database:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.primary = make_engine(settings.database_url, settings, "primary")
        self.replicas = [
            Replica(f"replica{i + 1}", make_engine(url, settings, f"replica{i + 1}"))
            for i, url in enumerate(settings.replica_urls)
        ]
        self._rr = itertools.count()
        self._lock = threading.Lock()

    # -- writes ---------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session on the primary inside a transaction (commit on success)."""
        with Session(self.primary, expire_on_commit=False) as session, session.begin():
            yield session

    # -- reads ----------------------------------------------------------------------------
    def _candidates(self) -> list[Replica]:
        now = time.monotonic()
        healthy = [r for r in self.replicas if r.available(now)]
        if not healthy:
            return []
        with self._lock:
            start = next(self._rr) % len(healthy)
        return healthy[start:] + healthy[:start]

    def _mark_down(self, replica: Replica, exc: Exception) -> None:
        replica.down_until = time.monotonic() + self.settings.replica_retry_seconds
        log.warning(
            "replica %s failed (%s); reading from other databases for %.0fs",
            replica.name,
            type(exc).__name__,
            self.settings.replica_retry_seconds,
        )
        # Drop pooled connections to the dead server so they are not handed out again.
        replica.engine.dispose(close=False)

    def read(self, fn: Callable[[Session], T], primary: bool = False) -> tuple[T, str]:
        """Run fn(session) on a replica (or on the primary) and say which one served it.

        Returns (result, "replica" | "primary").
        """
        if not primary:
            for replica in self._candidates():
                try:
                    with Session(replica.engine, expire_on_commit=False) as session:
                        return fn(session), "replica"
                except (OperationalError, DBAPIError) as exc:
                    if isinstance(exc, DBAPIError) and not (
                        isinstance(exc, OperationalError) or exc.connection_invalidated
                    ):
                        raise
                    self._mark_down(replica, exc)
        with Session(self.primary, expire_on_commit=False) as session:
            return fn(session), "primary"

    # -- health ---------------------------------------------------------------------------
    @staticmethod
    def ping(engine: Engine) -> str:
        """Run a query; return the server that answered (``host:port``)."""
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            info = conn.connection.dbapi_connection.info
            return f"{info.host}:{info.port}"

    def dispose(self) -> None:
        self.primary.dispose()
        for replica in self.replicas:
            replica.engine.dispose()
