"""The Celery app for workers and beat: ``celery -A inkpot.worker:celery worker``.

Importing this module builds the Flask app from the environment (``INKPOT_*``) and the
Celery app that ``make_celery`` made for it, so tasks run in that app's context.
"""

from __future__ import annotations

from celery import Celery

from . import create_app

flask_app = create_app()
celery: Celery = flask_app.extensions["celery"]
