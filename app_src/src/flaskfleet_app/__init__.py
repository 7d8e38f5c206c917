"""flaskfleet sample service: articles/notes with a read/write split, cache and Celery jobs."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, jsonify, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from ._version import __version__
from .config import ConfigError, Settings

__all__ = ["ConfigError", "Settings", "__version__", "create_app"]

log = logging.getLogger(__name__)


@dataclass
class State:
    settings: Settings
    db: object
    cache: object
    celery: object


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app. Configuration comes from the environment unless given.

    Raises ConfigError (naming each bad variable) when the configuration is unusable.
    """
    if settings is None:
        settings = Settings.from_env()

    from . import api, health, metrics, views
    from .cache import SafeCache
    from .celeryconf import make_celery
    from .db import Database

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_content_length,
        MAX_FORM_MEMORY_SIZE=settings.max_content_length,
        JSON_SORT_KEYS=False,
    )
    if settings.trusted_proxies > 0:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)

    state = State(
        settings=settings,
        db=Database(settings),
        cache=SafeCache(app, settings),
        celery=make_celery(settings, producer=True),
    )
    app.extensions["flaskfleet"] = state

    metrics.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)

    @app.context_processor
    def _template_globals():
        return {"config_instance": settings.instance, "release": settings.release}

    @app.after_request
    def _served_by(response):
        response.headers["X-Served-By"] = settings.instance
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        body = {"error": exc.description or exc.name, "status": exc.code}
        if exc.code == 405 and exc.valid_methods:
            body["allowed"] = sorted(exc.valid_methods)
        response = exc.get_response()
        response.data = jsonify(body).get_data()
        response.content_type = "application/json"
        return response

    @app.errorhandler(OperationalError)
    def _db_down(exc: OperationalError):
        log.error("database unavailable on %s %s: %s", request.method, request.path, type(exc))
        return jsonify(error="database unavailable", status=503), 503

    @app.errorhandler(Exception)
    def _unhandled(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify(error="internal server error", status=500), 500

    return app
