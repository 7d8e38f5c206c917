"""flaskfleet sample service: articles/notes with a read/write split, cache and Celery jobs."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, Response, has_request_context, jsonify, request
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from ._version import __version__
from .config import ConfigError, Settings

__all__ = ["ConfigError", "Settings", "__version__", "create_app"]

log = logging.getLogger(__name__)


class TLSCookieResponse(Response):
    """A response whose cookies are Secure whenever the request came over TLS.

    Behind the load balancers the app learns that from ProxyFix (X-Forwarded-Proto, see
    FLASKFLEET_TRUSTED_PROXIES), so a browser never sends the session (which holds the CSRF
    token) or the read-your-writes pin over plain HTTP, while a site served over plain HTTP
    (the lab's port 8080) keeps working. Every cookie goes through here: Flask's session,
    service.set_ryw_cookie and delete_cookie all call set_cookie.
    """

    def set_cookie(self, key: str, *args, secure: bool = False, **kwargs) -> None:
        if has_request_context() and request.is_secure:
            secure = True
        super().set_cookie(key, *args, secure=secure, **kwargs)


csrf = CSRFProtect()


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
    app.response_class = TLSCookieResponse
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_content_length,
        MAX_FORM_MEMORY_SIZE=settings.max_content_length,
        JSON_SORT_KEYS=False,
        # The session only carries the CSRF token of the HTML form. Secure comes from
        # TLSCookieResponse (per request: behind TLS only).
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Flask-WTF's extra check for HTTPS, that the Referer names this host and port, cannot
        # pass behind the load balancers: nginx forwards Host without the port, so a site on
        # any port but 443 (the lab's 8443) would refuse every form. The token, bound to the
        # signed session cookie (SameSite=Lax, Secure behind TLS), is the protection.
        WTF_CSRF_SSL_STRICT=False,
    )
    if settings.trusted_proxies > 0:
        n = settings.trusted_proxies
        # Only the headers the load balancers set: X-Forwarded-For and -Proto. The Host
        # nginx forwards is one of its server names; X-Forwarded-Host/-Port are never
        # trusted (a client could send them, and a proxy that drops them is one setting
        # away from passing them through).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=0, x_port=0)

    state = State(
        settings=settings,
        db=Database(settings),
        cache=SafeCache(app, settings),
        celery=make_celery(settings, producer=True),
    )
    app.extensions["flaskfleet"] = state

    metrics.init_app(app)
    # CSRF tokens on every state-changing request (the HTML form posts), except the JSON
    # API: it has no cookie-based authentication a forged cross-site request could ride
    # on (its only cookie, the read-your-writes pin, grants nothing), a cross-site form
    # cannot send its application/json bodies without a CORS preflight the app never
    # allows, and its clients (load generators, scripts, tests) hold no session to carry
    # a token.
    csrf.init_app(app)
    csrf.exempt(api.bp)
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
