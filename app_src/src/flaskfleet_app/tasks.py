"""Celery tasks (imported by the worker only; the web app sends them by name)."""

from __future__ import annotations

import logging

from celery.signals import worker_process_init, worker_process_shutdown

from . import jobs, retrying
from .celery_app import celery, settings
from .db import Database

log = logging.getLogger(__name__)
_db: Database | None = None


def get_db() -> Database:
    global _db
    if _db is None:
        _db = Database(settings)
    return _db


@worker_process_init.connect
def _fresh_engines(**_kwargs) -> None:
    # Never share pooled connections across a fork.
    global _db
    _db = None


@worker_process_shutdown.connect
def _close_engines(**_kwargs) -> None:
    if _db is not None:
        _db.dispose()


# Jobs retry transient database and broker errors (retrying.py: bounded exponential backoff,
# about 3 minutes in total by default) and record a final failure where /api/reports/<id>
# and /api/jobs/<key> show it.
@celery.task(
    name="flaskfleet_app.tasks.build_report", bind=True, acks_late=True, reject_on_worker_lost=True
)
def build_report(self, report_id: str) -> dict:
    return retrying.run(
        self,
        settings,
        lambda: jobs.build_report(get_db(), report_id),
        lambda error: jobs.fail_report(get_db(), report_id, error),
    )


@celery.task(
    name="flaskfleet_app.tasks.slow_count", bind=True, acks_late=True, reject_on_worker_lost=True
)
def slow_count(self, key: str, seconds: float = 5.0) -> dict:
    return retrying.run(
        self,
        settings,
        lambda: jobs.slow_count(get_db(), key, seconds),
        lambda error: jobs.record_job_failure(get_db(), key, error, self.request.retries),
    )


# Periodic: not retried, the next beat supersedes a heartbeat lost to a blip.
@celery.task(name="flaskfleet_app.tasks.refresh_stats", acks_late=True, reject_on_worker_lost=True)
def refresh_stats(scheduled_by: str = "unknown") -> dict:
    return jobs.record_heartbeat(get_db(), scheduled_by)
