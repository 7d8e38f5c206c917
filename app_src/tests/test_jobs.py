"""Task bodies are idempotent: running one twice for the same id/key applies it once."""

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from flaskfleet_app import jobs
from flaskfleet_app.config import Settings
from flaskfleet_app.db import Database
from flaskfleet_app.models import JobEffect, JobExecution, Report


@pytest.fixture
def db(base_env, clean):
    database = Database(Settings.from_env(base_env))
    yield database
    database.dispose()


def test_build_report_twice_applies_once(client, db):
    client.post("/api/articles", json={"title": "Redis cache", "body": "redis redis postgres"})
    client.post("/api/articles", json={"title": "Replica", "body": "postgres the replica"})
    rid = uuid.uuid4()
    with db.write() as s:
        s.add(Report(id=rid, status="pending"))
    first = jobs.build_report(db, str(rid))
    second = jobs.build_report(db, str(rid))
    assert first["applied"] is True and second["applied"] is False
    report, _ = db.read(lambda s: s.get(Report, rid), primary=True)
    assert report.status == "success" and report.attempts == 1
    assert report.result["articles"] == 2
    assert report.result["total_words"] == 9
    top = {w["word"]: w["count"] for w in report.result["top_words"]}
    assert top["postgres"] == 2 and top["redis"] == 3 and top["replica"] == 2
    assert "the" not in top


def test_build_report_for_unknown_row_upserts(db):
    rid = str(uuid.uuid4())
    assert jobs.build_report(db, rid)["applied"] is True
    assert jobs.build_report(db, rid)["applied"] is False


def test_slow_count_counts_executions_and_applies_once(db):
    assert jobs.slow_count(db, "k1", 0.05)["applied"] is True
    assert jobs.slow_count(db, "k1", 0.0)["applied"] is False
    status = jobs.job_status(db, "k1")
    assert status["executions"] == 2
    assert status["finished_executions"] == 2
    assert status["effects"] == 1 and status["applied"] is True
    assert jobs.job_status(db, "nothing")["executions"] == 0


def test_job_status_is_one_snapshot(db):
    """A job that finishes while its status is read shows whole: not half applied."""
    with db.write() as s:
        s.add(JobExecution(key="race", hostname="h", pid=1, seconds=0))
    finished = []

    def finish_after_first_read(orm_execute_state):
        # Runs before each ORM statement of the status read: once the first has run,
        # the job finishes (its effect and finished_at commit together, as slow_count does).
        if finished or not orm_execute_state.is_select:
            return
        finished.append(True)
        orm_execute_state.session.connection()  # take the snapshot's connection first
        result = orm_execute_state.invoke_statement()
        with db.write() as w:
            execution = w.scalars(select(JobExecution).where(JobExecution.key == "race")).one()
            execution.finished_at = datetime.now(UTC)
            w.add(JobEffect(key="race", hostname="h", execution_id=execution.id))
        return result

    event.listen(Session, "do_orm_execute", finish_after_first_read)
    try:
        during = jobs.job_status(db, "race")
    finally:
        event.remove(Session, "do_orm_execute", finish_after_first_read)
    assert finished
    assert (during["applied"], during["finished_executions"]) == (False, 0), during
    after = jobs.job_status(db, "race")
    assert (after["applied"], after["finished_executions"]) == (True, 1), after


def test_heartbeat(db, client):
    jobs.record_heartbeat(db, "beathost:1")
    r = client.get("/api/beat")
    assert r.json["count"] == 1
    assert r.json["heartbeats"][0]["scheduled_by"] == "beathost:1"
    assert r.json["scheduler_hosts"] == ["beathost"]


def test_job_api_validation(client):
    assert client.post("/api/jobs", json={"seconds": 1}).status_code == 422
    assert client.post("/api/jobs", json={"key": "bad key!", "seconds": 1}).status_code == 422
    assert client.post("/api/jobs", json={"key": "k", "seconds": "1"}).status_code == 422
    assert client.post("/api/jobs", json={"key": "k", "seconds": 10**6}).status_code == 422
    assert client.post("/api/jobs", data="x", content_type="application/json").status_code == 400


def test_enqueue_with_broker_down_is_503_not_hang(make_app):
    import time

    from servers import closed_port

    client = make_app(
        FLASKFLEET_BROKER_URL=f"redis://:pw@127.0.0.1:{closed_port()}/0"
    ).test_client()
    t0 = time.monotonic()
    r = client.post("/api/reports")
    assert r.status_code == 503 and r.json["error"] == "broker unavailable"
    assert time.monotonic() - t0 < 10
    status = client.get(f"/api/reports/{r.json['id']}").json
    assert status["status"] == "failure"
