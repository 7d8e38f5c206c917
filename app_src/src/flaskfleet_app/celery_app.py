"""Celery application: `celery -A flaskfleet_app.celery_app worker|beat`.

Importing this module reads the configuration from the environment and refuses to start
(ConfigError naming the variable) when it is unusable. The web app builds its own producer
instance with celeryconf.make_celery(settings) and sends tasks by name.
"""

from __future__ import annotations

from .celeryconf import TASKS, make_celery
from .config import Settings

settings = Settings.from_env()
celery = make_celery(settings)
celery.conf.imports = (TASKS,)
celery.set_current()
celery.set_default()
