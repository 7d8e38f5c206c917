"""A promotion without a re-render: the write URL names every database server
(libpq multi-host, target_session_attrs=read-write) and the app follows the one that accepts
writes; a job in flight during the switch retries and applies once.

Two real PostgreSQL servers play the primary and a standby. A standby is, for libpq's
target_session_attrs, a server whose sessions are read-only: `b` is read-only until it is
"promoted" (default_transaction_read_only reset), and the primary `a` goes down (fast stop),
as promote_replica.yml fences it.
"""

import time

import pytest
from conftest import APP_PASSWORD, APP_USER, truncate
from servers import PostgresServer, closed_port, wait_for
from sqlalchemy import text
from test_worker import worker

from flaskfleet_app.celeryconf import make_celery
from flaskfleet_app.config import Settings
from flaskfleet_app.db import Database
from flaskfleet_app.jobs import job_status
from flaskfleet_app.migrate import upgrade
from flaskfleet_app.models import Article


def multi_url(*ports: int) -> str:
    hosts = "&".join(f"host=127.0.0.1:{p}" for p in ports)
    return (
        f"postgresql+psycopg://{APP_USER}:{APP_PASSWORD}@/flaskfleet?{hosts}"
        "&target_session_attrs=read-write&connect_timeout=2"
    )


@pytest.fixture(scope="module")
def servers(base_env):
    started = []
    try:
        for _ in range(2):
            server = PostgresServer().start()
            started.append(server)
            server.create_role(APP_USER, APP_PASSWORD)
            server.create_database("flaskfleet", APP_USER)
            url = server.url(APP_USER, APP_PASSWORD, "flaskfleet")
            upgrade(Settings.from_env({**base_env, "FLASKFLEET_DATABASE_URL": url}))
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def pair(servers):
    """(primary a, standby b): a running and writable, b running and read-only, both empty."""
    a, b = servers
    for server, read_only in ((a, False), (b, True)):
        try:
            server.admin().close()
        except Exception:  # noqa: BLE001 - halted by an earlier test
            server.launch()
        server.set_read_only(False)
        truncate(server.url(APP_USER, APP_PASSWORD, "flaskfleet"))
        server.set_read_only(read_only)
    return a, b


def served_by(db: Database) -> int:
    with db.write() as session:
        session.add(Article(title="t", body="b", author="a"))
        return session.scalar(text("SELECT inet_server_port()"))


@pytest.mark.parametrize("dead_first", [False, True])
def test_writes_go_to_the_server_that_accepts_them(pair, base_env, dead_first):
    a, b = pair
    ports = ([closed_port()] if dead_first else []) + [b.port, a.port]
    db = Database(Settings.from_env({**base_env, "FLASKFLEET_DATABASE_URL": multi_url(*ports)}))
    try:
        assert served_by(db) == a.port  # the read-only server and a dead one are skipped
    finally:
        db.dispose()


def test_a_promotion_needs_no_new_url(pair, base_env, make_app):
    a, b = pair
    url = multi_url(a.port, b.port)  # what the topology renders: the primary first
    db = Database(Settings.from_env({**base_env, "FLASKFLEET_DATABASE_URL": url}))
    app = make_app(FLASKFLEET_DATABASE_URL=url)
    try:
        assert served_by(db) == a.port
        assert app.test_client().get("/readyz").json["primary"]["server"] == f"127.0.0.1:{a.port}"

        a.halt()  # fenced
        b.set_read_only(False)  # promoted
        started = time.monotonic()
        assert served_by(db) == b.port  # the pooled connection to a is dropped by the pre-ping
        assert time.monotonic() - started < 5
        ready = app.test_client().get("/readyz").json
        assert ready["primary"] == {**ready["primary"], "ok": True, "server": f"127.0.0.1:{b.port}"}
    finally:
        db.dispose()


def test_a_job_in_flight_retries_through_the_promotion(pair, client, cli_env, broker_server):
    a, b = pair
    url = multi_url(a.port, b.port)
    env = cli_env(
        FLASKFLEET_DATABASE_URL=url,
        FLASKFLEET_BROKER_URL=broker_server.url(5),
        FLASKFLEET_TASK_RETRY_BASE="0.5",
        FLASKFLEET_TASK_RETRY_MAX_DELAY="2",
        FLASKFLEET_TASK_RETRIES="30",
    )
    ext = client.application.extensions["flaskfleet"]
    ext.celery = make_celery(Settings.from_env(env), producer=True)
    a.halt()  # the primary is gone and nothing accepts writes yet
    proc = worker(env, "failover", concurrency=1)
    db = Database(Settings.from_env(env))
    try:
        assert client.post("/api/jobs", json={"key": "fo-1", "seconds": 0.2}).status_code == 202
        wait_for(lambda: "retry 2/30" in proc.text(), 30, what="two retries")
        b.set_read_only(False)  # promoted
        status = wait_for(
            lambda: (s := job_status(db, "fo-1"))["applied"] and s, 30, what="the job applied"
        )
    finally:
        db.dispose()
        proc.stop()
    assert status["status"] == "applied" and status["effects"] == 1, status
    assert "OperationalError" in proc.text()
