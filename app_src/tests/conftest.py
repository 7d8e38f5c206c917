"""Session fixtures: a real PostgreSQL cluster (primary db + a stand-in replica db with
different contents) and two real Redis servers (cache, broker), all on 127.0.0.1."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from servers import PostgresServer, RedisServer
from sqlalchemy import create_engine, text

from flaskfleet_app import create_app
from flaskfleet_app.config import Settings
from flaskfleet_app.migrate import upgrade

APP_USER = "app"
APP_PASSWORD = "app-db-pw-123"
CACHE_PASSWORD = "cache-pw-456"
BROKER_PASSWORD = "broker-pw-789"
SECRET = "test-secret-key-0123456789"
TABLES = (
    "articles, tags, article_tags, reports, job_executions, job_effects, job_failures, "
    "beat_heartbeats"
)


@pytest.fixture(scope="session")
def pg():
    server = PostgresServer().start()
    try:
        server.create_role(APP_USER, APP_PASSWORD)
        server.create_database("flaskfleet", APP_USER)
        server.create_database("flaskfleet_replica", APP_USER)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cache_server():
    server = RedisServer(CACHE_PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def broker_server():
    server = RedisServer(BROKER_PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def primary_url(pg) -> str:
    return pg.url(APP_USER, APP_PASSWORD, "flaskfleet")


@pytest.fixture(scope="session")
def replica_url(pg) -> str:
    return pg.url(APP_USER, APP_PASSWORD, "flaskfleet_replica")


@pytest.fixture(scope="session")
def base_env(primary_url, cache_server, broker_server) -> dict[str, str]:
    return {
        "FLASKFLEET_DATABASE_URL": primary_url,
        "FLASKFLEET_CACHE_URL": cache_server.url(0),
        "FLASKFLEET_BROKER_URL": broker_server.url(0),
        "FLASKFLEET_SECRET_KEY": SECRET,
        "FLASKFLEET_INSTANCE": "test:1",
        "FLASKFLEET_RELEASE": "1.0.0-test",
        "FLASKFLEET_REPLICA_RETRY_SECONDS": "30",
    }


@pytest.fixture(scope="session")
def migrated(base_env, replica_url):
    """Both databases at head (the 'replica' db is a separate database we fill differently)."""
    upgrade(Settings.from_env(base_env))
    upgrade(Settings.from_env({**base_env, "FLASKFLEET_DATABASE_URL": replica_url}))
    return True


def truncate(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture
def clean(migrated, primary_url, replica_url, cache_server):
    # The broker is left alone: a running worker keeps its queue bindings there.
    truncate(primary_url)
    truncate(replica_url)
    cache_server.client().flushall()


@pytest.fixture
def make_app(base_env, clean) -> Callable:
    apps = []

    def factory(**overrides):
        env = {**base_env, **{k: str(v) for k, v in overrides.items()}}
        app = create_app(Settings.from_env(env))
        app.testing = True
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["flaskfleet"].db.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def cli_env(base_env) -> Callable[..., dict[str, str]]:
    """An environment for subprocesses: only what we set, plus PATH."""

    def build(**overrides) -> dict[str, str]:
        env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/root"),
            "LC_ALL": "C.UTF-8",
        }
        env.update(base_env)
        env.update(overrides)
        return {k: str(v) for k, v in env.items() if v is not None}

    return build
