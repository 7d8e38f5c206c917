"""inkpot: a small notes service, deliberately unlike flaskfleet's sample.

It is configured only through ``app.config.from_prefixed_env("INKPOT")`` (so nested
settings such as ``INKPOT_CELERY__broker_url`` land in ``app.config["CELERY"]``), writes
to the primary, reads lists from a replica, counts words in a Celery task, and has no
health or version endpoint. The WSGI target is the factory call ``inkpot:create_app()``.
"""

from __future__ import annotations

import random
import socket

from flask import Flask, abort, jsonify, render_template, request
from flask_migrate import Migrate
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from .models import Note, db

MIGRATIONS = __path__[0] + "/migrations"


def create_app(overrides: dict | None = None) -> Flask:
    app = Flask(__name__, static_url_path="/assets")
    app.config.update(
        SECRET_KEY="dev only",
        SQLALCHEMY_DATABASE_URI="sqlite:///inkpot.db",
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        READ_REPLICAS=[],
        RELEASE="dev",
        CELERY={},
    )
    app.config.from_prefixed_env("INKPOT")
    app.config.update(overrides or {})
    db.init_app(app)
    Migrate(app, db, directory=MIGRATIONS)
    replicas = [create_engine(url, pool_pre_ping=True) for url in app.config["READ_REPLICAS"] or []]

    def reader() -> Session:
        """A session on a replica (any), or on the primary when there is none."""
        if replicas:
            return Session(random.choice(replicas))  # noqa: S311 - load spreading, not crypto
        return db.session

    @app.get("/")
    def index():
        session = reader()
        notes = session.scalars(select(Note).order_by(Note.id.desc()).limit(20)).all()
        return render_template(
            "index.html", notes=notes, release=app.config["RELEASE"], host=socket.gethostname()
        )

    @app.post("/notes")
    def create_note():
        data = request.get_json(silent=True) or {}
        title = str(data.get("title") or "").strip()[:200]
        if not title:
            return jsonify(error="title is required"), 400
        note = Note(title=title, body=str(data.get("body") or ""))
        db.session.add(note)
        db.session.commit()
        from .worker import count_words  # the Celery app is built from this Flask app

        count_words.delay(note.id)
        return jsonify(id=note.id), 201

    @app.get("/notes/<int:note_id>")
    def get_note(note_id: int):
        session = reader() if request.args.get("from") == "replica" else db.session
        note = session.get(Note, note_id)
        if note is None:
            abort(404)
        return jsonify(note.as_dict())

    return app
