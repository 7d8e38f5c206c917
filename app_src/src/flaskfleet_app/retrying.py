"""Retries of Celery tasks across a database or broker blip (a failover, a restart).

A task body that fails with a transient error (connection refused or reset, the server
closing the connection, a read-only transaction on a server that was just demoted, a server
still starting, a broker connection error) is retried with a bounded exponential backoff:
retry n waits min(TASK_RETRY_MAX_DELAY, TASK_RETRY_BASE * 2**n) seconds, less up to 20 %
jitter, TASK_RETRIES times. The defaults (2 s, 30 s, 10) wait 168..210 s in total: long
enough to span a promotion. Task bodies are idempotent, so a retry never applies twice.

A task that still fails after its retries, or fails with any other error, is recorded as
failed by the caller's ``record_failure`` (where the job status endpoint shows it) and the
exception propagates (Celery marks the task failed and acknowledges it).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TypeVar

import redis.exceptions
from celery.exceptions import Reject, Retry
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import OperationalError as SAOperationalError

from .config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# SQLSTATEs that end when the failover or restart ends: connection exceptions (08),
# read-only transaction (25006, a demoted or still-standby server), operator intervention
# (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now).
TRANSIENT_SQLSTATES = frozenset({"25006", "57P01", "57P02", "57P03"})
TRANSIENT_SQLSTATE_CLASSES = ("08",)
BROKER_ERRORS = (
    KombuOperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
)
JITTER = 0.2


def is_transient(exc: BaseException) -> bool:
    """True for errors that a failover or a restart explains and that go away by themselves."""
    if isinstance(exc, BROKER_ERRORS):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, SAOperationalError):
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        return sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith(TRANSIENT_SQLSTATE_CLASSES)
    return False


def delay(retries: int, settings: Settings, rand: Callable[[float, float], float] = random.uniform):
    """Seconds before retry number ``retries`` (0-based): capped exponential, minus jitter."""
    full = min(settings.task_retry_max_delay, settings.task_retry_base * 2**retries)
    return full * rand(1.0 - JITTER, 1.0)


def total_wait(settings: Settings) -> tuple[float, float]:
    """Shortest and longest total wait of all retries of one task."""
    full = sum(
        min(settings.task_retry_max_delay, settings.task_retry_base * 2**n)
        for n in range(settings.task_retries)
    )
    return full * (1.0 - JITTER), full


def run(
    task,
    settings: Settings,
    body: Callable[[], T],
    record_failure: Callable[[str], None],
) -> T:
    """Run ``body`` for a bound Celery ``task``; retry transient errors, record final failures."""
    try:
        return body()
    except Exception as exc:
        retries = task.request.retries
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:2000]
        if is_transient(exc) and retries < settings.task_retries:
            countdown = delay(retries, settings)
            log.warning(
                "%s[%s]: transient %s, retry %d/%d in %.1fs",
                task.name,
                task.request.id,
                type(exc).__name__,
                retries + 1,
                settings.task_retries,
                countdown,
            )
            try:
                raise task.retry(
                    exc=exc, countdown=countdown, max_retries=settings.task_retries
                ) from exc
            except Retry:
                raise
            except Exception as publish_exc:  # noqa: BLE001 - the broker is down too
                # The retry could not be sent: give the message back instead of acknowledging
                # it (if the broker cannot take it either, it stays unacknowledged and comes
                # back after the visibility timeout).
                log.warning(
                    "%s[%s]: cannot schedule the retry (%s): message requeued",
                    task.name,
                    task.request.id,
                    type(publish_exc).__name__,
                )
                raise Reject(publish_exc, requeue=True) from exc
        if is_transient(exc):
            error = f"gave up after {retries} retries: {error}"
        log.error("%s[%s] failed: %s", task.name, task.request.id, error)
        try:
            record_failure(error)
        except Exception as record_exc:  # noqa: BLE001 - reported, the task fails anyway
            log.error(
                "%s[%s]: cannot record the failure (%s)",
                task.name,
                task.request.id,
                type(record_exc).__name__,
            )
        raise
