"""The Celery app, made by a factory from the Flask app: ``celery -A inkpot.worker:celery``.

Settings come from the Flask config's CELERY mapping (``INKPOT_CELERY__broker_url``,
``INKPOT_CELERY__result_backend``, ...). Without a broker, tasks run eagerly (local use).
"""

from __future__ import annotations

from celery import Celery, Task
from flask import Flask


def make_celery(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    config = dict(app.config.get("CELERY") or {})
    if not config.get("broker_url"):
        config.setdefault("task_always_eager", True)
    config.setdefault("task_acks_late", True)
    config.setdefault("task_reject_on_worker_lost", True)
    celery_app = Celery(app.import_name, task_cls=FlaskTask)
    celery_app.config_from_object(config)
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def _build() -> Celery:
    from . import create_app

    return make_celery(create_app())


celery = _build()


@celery.task(name="inkpot.count_words", bind=True, max_retries=10, default_retry_delay=5)
def count_words(self, note_id: int) -> int | None:
    """Store the word count of a note (idempotent: the same count every time)."""
    from .models import Note, db

    try:
        note = db.session.get(Note, note_id)
        if note is None:
            return None
        note.words = len(note.body.split())
        db.session.commit()
        return note.words
    except Exception as exc:  # a database blip: try again later
        db.session.rollback()
        raise self.retry(exc=exc) from exc
