"""Celery configuration shared by the worker/beat app and the web app's task producer."""

from __future__ import annotations

import os
import socket

from celery import Celery

from .config import Settings

TASKS = "flaskfleet_app.tasks"


def make_celery(settings: Settings, producer: bool = False) -> Celery:
    """The Celery app for the worker/beat, or (producer=True) for the web app, which only
    sends tasks by name and keeps job state in the database, so it needs no result backend
    (a down result store must not hold a request)."""
    app = Celery("flaskfleet_app", set_as_current=False)
    transport_options = {
        # A message taken by a worker that died (kill -9, OOM, power loss) goes back to the
        # queue once it has been unacked for visibility_timeout seconds. kombu sweeps for
        # such messages at worker start and then every interval*throttle seconds (100 s by
        # default): sweep every visibility_timeout/4 seconds (1..60 s) instead.
        "visibility_timeout": settings.visibility_timeout,
        "unacked_restore_interval": max(1, min(60, settings.visibility_timeout // 4)),
        "unacked_restore_throttle": 1,
        "socket_timeout": 5,
        "socket_connect_timeout": 5,
    }
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=None if producer else settings.result_backend,
        broker_connection_timeout=2 if producer else 4,
        broker_transport_options=transport_options,
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        # At-least-once delivery: ack after the task body ran, requeue if the worker dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=settings.task_soft_time_limit,
        result_expires=24 * 3600,
        worker_send_task_events=False,
        beat_schedule={
            "refresh-stats": {
                "task": f"{TASKS}.refresh_stats",
                "schedule": settings.beat_interval,
                # Evaluated in the process that loads the schedule: beat's own host.
                "kwargs": {"scheduled_by": f"{socket.gethostname()}:{os.getpid()}"},
                "options": {"expires": max(1.0, settings.beat_interval)},
            }
        },
    )
    return app
