"""Jobs retry transient database and broker errors with a bounded exponential backoff, and a
job that gives up is recorded as failed where the status endpoints show it."""

import uuid
from types import SimpleNamespace

import psycopg
import pytest
from celery.exceptions import Reject, Retry
from kombu.exceptions import OperationalError as KombuOperationalError
from servers import closed_port
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from flaskfleet_app import jobs, retrying
from flaskfleet_app.celeryconf import make_celery
from flaskfleet_app.config import Settings
from flaskfleet_app.db import Database
from flaskfleet_app.models import Report


@pytest.fixture
def settings(base_env, clean):
    return Settings.from_env(base_env)


@pytest.fixture
def db(settings):
    database = Database(settings)
    yield database
    database.dispose()


def error_of(fn) -> Exception:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError("no error")


def test_the_default_backoff_spans_a_failover(settings):
    shortest, longest = retrying.total_wait(settings)
    assert 120 <= shortest <= longest <= 240
    delays = [retrying.delay(n, settings, rand=lambda lo, hi: hi) for n in range(10)]
    assert delays == [2, 4, 8, 16, 30, 30, 30, 30, 30, 30]
    assert retrying.delay(3, settings, rand=lambda lo, hi: lo) == pytest.approx(16 * 0.8)


def test_the_visibility_timeout_follows_the_time_limit(settings, base_env):
    options = make_celery(settings).conf.broker_transport_options
    assert options["visibility_timeout"] == settings.task_time_limit + 60 == 360
    short = Settings.from_env({**base_env, "FLASKFLEET_TASK_TIME_LIMIT": "30"})
    assert make_celery(short).conf.broker_transport_options["visibility_timeout"] == 90


def test_real_transient_errors_are_recognised(pg, primary_url, migrated):
    engine = create_engine(primary_url)
    try:
        # A read-only transaction: a demoted (or still standby) server.
        with engine.connect() as conn:
            conn.execute(text("SET default_transaction_read_only = on"))
            conn.commit()
            read_only = error_of(lambda: conn.execute(text("CREATE TEMP TABLE t (i int)")))
        assert read_only.orig.sqlstate == "25006" and retrying.is_transient(read_only)
        # The server closing the connection (a restart, a fence).
        with engine.connect() as conn:
            pid = conn.scalar(text("SELECT pg_backend_pid()"))
            with pg.admin() as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            closed = error_of(lambda: conn.execute(text("SELECT 1")))
        assert retrying.is_transient(closed), repr(closed)
    finally:
        engine.dispose()
    refused = create_engine(f"postgresql+psycopg://a:b@127.0.0.1:{closed_port()}/x")
    assert retrying.is_transient(error_of(refused.connect))
    assert retrying.is_transient(KombuOperationalError("broker down"))
    # Bugs and bad data are not retried.
    integrity = IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("dup"))
    assert not retrying.is_transient(integrity)
    assert not retrying.is_transient(ValueError("bad id"))


def fake_task(retries=0, retry=None):
    def default_retry(exc, countdown, max_retries):
        raise Retry(exc=exc, when=countdown)

    return SimpleNamespace(
        name="t", request=SimpleNamespace(id="1", retries=retries), retry=retry or default_retry
    )


def transient():
    raise OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused"))


def test_a_transient_error_is_retried_then_recorded(settings):
    recorded = []
    with pytest.raises(Retry) as info:
        retrying.run(fake_task(retries=3), settings, transient, recorded.append)
    assert 16 * 0.8 <= info.value.when <= 16 and recorded == []
    with pytest.raises(OperationalError):
        retrying.run(fake_task(retries=10), settings, transient, recorded.append)
    assert len(recorded) == 1 and recorded[0].startswith("gave up after 10 retries: Operational")


def test_other_errors_are_recorded_at_once(settings):
    recorded = []
    with pytest.raises(ValueError):
        retrying.run(fake_task(), settings, lambda: int("x"), recorded.append)
    assert recorded and recorded[0].startswith("ValueError")


def test_a_retry_the_broker_cannot_take_requeues_the_message(settings):
    def broker_down(exc, countdown, max_retries):
        raise KombuOperationalError("Connection refused")

    with pytest.raises(Reject) as info:
        retrying.run(fake_task(retry=broker_down), settings, transient, lambda e: None)
    assert info.value.requeue is True


def test_celery_retries_a_job_until_the_database_answers(db, settings, client):
    app = make_celery(settings)
    app.conf.task_always_eager = True
    failures = {"left": 3}

    @app.task(bind=True, name="test.flaky_count")
    def flaky_count(self, key):
        def body():
            if failures["left"]:
                failures["left"] -= 1
                transient()
            return jobs.slow_count(db, key, 0)

        return retrying.run(
            self,
            settings,
            body,
            lambda e: jobs.record_job_failure(db, key, e, self.request.retries),
        )

    assert flaky_count.apply(args=["flaky-1"]).get()["applied"] is True
    status = client.get("/api/jobs/flaky-1").json
    assert status["status"] == "applied" and status["executions"] == 1 and status["effects"] == 1


def test_a_job_that_gives_up_shows_as_failed(db, base_env, client):
    settings = Settings.from_env({**base_env, "FLASKFLEET_TASK_RETRIES": "2"})
    app = make_celery(settings)
    app.conf.task_always_eager = True

    @app.task(bind=True, name="test.doomed")
    def doomed(self, key):
        return retrying.run(
            self,
            settings,
            transient,
            lambda e: jobs.record_job_failure(db, key, e, self.request.retries),
        )

    result = doomed.apply(args=["doomed-1"])
    assert result.failed()
    status = client.get("/api/jobs/doomed-1").json
    assert status["status"] == "failed" and status["retries"] == 2, status
    assert status["error"].startswith("gave up after 2 retries: OperationalError")
    # Submitted again and applied: the key is no longer failed.
    jobs.slow_count(db, "doomed-1", 0)
    status = client.get("/api/jobs/doomed-1").json
    assert status["status"] == "applied" and status["error"] is None


def test_a_report_that_gives_up_shows_as_failed(db, client):
    rid = uuid.uuid4()
    with db.write() as s:
        s.add(Report(id=rid, status="pending"))
    with pytest.raises(OperationalError):
        retrying.run(
            fake_task(retries=10),
            db.settings,
            transient,
            lambda e: jobs.fail_report(db, str(rid), e),
        )
    report = client.get(f"/api/reports/{rid}").json
    assert report["status"] == "failure"
    assert report["error"].startswith("gave up after 10 retries")
