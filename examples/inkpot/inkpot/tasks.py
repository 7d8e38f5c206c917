"""The Celery side: ``make_celery(flask_app)`` (Flask's documented pattern) and the task.

Settings come from the Flask config's CELERY mapping (``INKPOT_CELERY__broker_url``,
``INKPOT_CELERY__result_backend``, ...). Without a broker, tasks run eagerly (local use).
The worker's module-level app is ``inkpot.worker:celery``.
"""

from __future__ import annotations

from celery import Celery, Task, shared_task
from flask import Flask


def make_celery(app: Flask) -> Celery:
    """A Celery app whose tasks run in ``app``'s context; kept in app.extensions["celery"]."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    config = dict(app.config.get("CELERY") or {})
    if not config.get("broker_url"):
        config.setdefault("task_always_eager", True)
    config.setdefault("task_acks_late", True)
    config.setdefault("task_reject_on_worker_lost", True)
    config.setdefault("broker_connection_retry_on_startup", True)
    # A request that enqueues gives up after about a second when the broker is down (the
    # note is stored either way); the default policy would hold the request longer.
    config.setdefault(
        "task_publish_retry_policy",
        {"max_retries": 3, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
    )
    celery_app = Celery(app.import_name, task_cls=FlaskTask)
    celery_app.config_from_object(config)
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


@shared_task(
    name="inkpot.count_words", bind=True, max_retries=10, default_retry_delay=5, ignore_result=True
)
def count_words(self, note_id: int) -> int | None:
    """Store the word count of a note on the primary (idempotent: the same count every time).

    Nobody waits for the count (it is read back from the note), so no result is stored:
    enqueuing it does not touch the result backend.
    """
    from . import forget_index
    from .models import Note, db

    try:
        note = db.session.get(Note, note_id)
        if note is None:
            return None
        words = len(note.body.split())
        if note.words != words:
            note.words = words
            db.session.commit()
            forget_index()
        return words
    except Exception as exc:  # a database blip (a failover, say): try again later
        db.session.rollback()
        raise self.retry(exc=exc) from exc
