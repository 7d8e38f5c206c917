"""inkpot: a small notes service, deliberately unlike flaskfleet's sample.

It is configured only through ``app.config.from_prefixed_env("INKPOT")`` (so nested
settings such as ``INKPOT_CELERY__broker_url`` land in ``app.config["CELERY"]``), writes
to the primary, reads lists from a replica, caches the list in Redis when it has one,
counts words in a Celery task, and has no health or version endpoint. The WSGI target is
the factory call ``inkpot:create_app()``; the Celery app is ``inkpot.worker:celery``.
"""

from __future__ import annotations

import json
import logging
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from flask import Flask, current_app, jsonify, render_template, request
from flask_migrate import Migrate
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from .models import Note, db
from .tasks import make_celery

# Absolute, so `flask --app 'inkpot:create_app()' db upgrade` works from any directory.
MIGRATIONS = str(Path(__file__).resolve().parent / "migrations")
INDEX_KEY = "inkpot:index"  # the cached list of the newest notes
INDEX_TTL = 5  # seconds
TITLE_MAX = 200

log = logging.getLogger(__name__)


def sqlalchemy_url(url: str) -> str:
    """Accept libpq's multi-host form too: ``...@h1:5432,h2:5432/db?...``.

    SQLAlchemy cannot parse a comma in the host part; its multi-host form (psycopg) is
    ``...@/db?host=h1:5432&host=h2:5432&...``, which this returns. Other URLs are unchanged.
    """
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if "," not in hosts:
        return url
    params = [f"host={host}" for host in hosts.split(",") if host]
    query = "&".join(params + ([parts.query] if parts.query else []))
    return urlunsplit((parts.scheme, userinfo + at, parts.path, query, parts.fragment))


def _replica_urls(value) -> list[str]:
    """READ_REPLICAS: a JSON list of URLs (decoded by from_prefixed_env); one URL is allowed."""
    if not value:
        return []
    if isinstance(value, str):
        value = [value]
    return [sqlalchemy_url(str(url)) for url in value if url]


def create_app() -> Flask:
    app = Flask(__name__, static_url_path="/assets")
    app.config.update(
        SECRET_KEY="dev only",
        SQLALCHEMY_DATABASE_URI="sqlite:///inkpot.db",  # in the instance folder
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        READ_REPLICAS=[],
        CACHE_REDIS=None,
        RELEASE="dev",
        CELERY={},
    )
    app.config.from_prefixed_env("INKPOT")
    app.config["SQLALCHEMY_DATABASE_URI"] = sqlalchemy_url(app.config["SQLALCHEMY_DATABASE_URI"])
    app.config["READ_REPLICAS"] = _replica_urls(app.config["READ_REPLICAS"])
    # from_prefixed_env decodes JSON: a release such as "7" would arrive as an int.
    app.config["RELEASE"] = str(app.config["RELEASE"])

    db.init_app(app)
    Migrate(app, db, directory=MIGRATIONS)
    make_celery(app)
    replicas: list[Engine] = [
        create_engine(url, pool_pre_ping=True) for url in app.config["READ_REPLICAS"]
    ]
    cache = (
        redis.Redis.from_url(
            app.config["CACHE_REDIS"], socket_timeout=0.5, socket_connect_timeout=0.5
        )
        if app.config["CACHE_REDIS"]
        else None
    )
    app.extensions["inkpot"] = {"replicas": replicas, "cache": cache}

    @app.get("/")
    def index():
        return render_template(
            "index.html",
            notes=newest_notes(),
            release=app.config["RELEASE"],
            host=socket.gethostname(),
        )

    @app.post("/notes")
    def create_note():
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return jsonify(error="a JSON object is required"), 400
        title, body = data.get("title"), data.get("body", "")
        if not isinstance(title, str) or not title.strip() or len(title) > TITLE_MAX:
            return jsonify(error=f"title: a non-empty string of at most {TITLE_MAX} chars"), 400
        if not isinstance(body, str):
            return jsonify(error="body: a string"), 400
        note = Note(title=title.strip(), body=body)
        db.session.add(note)
        db.session.commit()
        forget_index()
        try:
            app.extensions["celery"].tasks["inkpot.count_words"].delay(note.id)
        except Exception:  # the note is stored: the client must not retry and duplicate it
            log.exception("could not enqueue inkpot.count_words(%s)", note.id)
        return jsonify(id=note.id), 201

    @app.get("/notes/<int:note_id>")
    def get_note(note_id: int):
        with reading(replica=request.args.get("from") == "replica") as session:
            note = session.get(Note, note_id)
            if note is None:
                return jsonify(error="no such note"), 404
            return jsonify(note.as_dict())

    return app


@contextmanager
def reading(replica: bool) -> Iterator[Session]:
    """A session on a replica (any one), or the primary's when asked or when there is none."""
    replicas = current_app.extensions["inkpot"]["replicas"]
    if not (replica and replicas):
        yield db.session
        return
    with Session(random.choice(replicas)) as session:  # noqa: S311 - spreading load, not crypto
        yield session


def newest_notes(limit: int = 20) -> list[dict]:
    """The newest notes, from the cache when it has them, else from a replica."""
    cache = current_app.extensions["inkpot"]["cache"]
    if cache is not None:
        try:
            cached = cache.get(INDEX_KEY)
            if cached is not None:
                return json.loads(cached)
        except redis.RedisError as exc:
            log.warning("cache unavailable, reading the database: %s", exc)
            cache = None
    with reading(replica=True) as session:
        query = select(Note).order_by(Note.id.desc()).limit(limit)
        notes = [n.as_dict() for n in session.scalars(query)]
    if cache is not None:
        try:
            cache.set(INDEX_KEY, json.dumps(notes), ex=INDEX_TTL)
        except redis.RedisError as exc:
            log.warning("cache unavailable: %s", exc)
    return notes


def forget_index() -> None:
    """Drop the cached list after a write (best effort: it expires on its own anyway)."""
    cache = current_app.extensions["inkpot"]["cache"]
    if cache is None:
        return
    try:
        cache.delete(INDEX_KEY)
    except redis.RedisError as exc:
        log.warning("cache unavailable: %s", exc)
