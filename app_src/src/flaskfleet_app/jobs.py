"""Task bodies as plain functions of a Database, so they are testable without a worker.

Each one is idempotent: running it twice for the same id/key applies its effect once.
"""

from __future__ import annotations

import collections
import os
import re
import socket
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert

from .db import Database
from .models import Article, Heartbeat, JobEffect, JobExecution, JobFailure, Report

WORD = re.compile(r"[a-z0-9']+")
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have in is it its of on or that the this to "
    "was were will with".split()
)


def hostname() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def now() -> datetime:
    return datetime.now(UTC)


def compute_report(db: Database) -> dict:
    """Word statistics over every article (read on the primary: reports must be current)."""
    counts: collections.Counter[str] = collections.Counter()
    authors: collections.Counter[str] = collections.Counter()
    articles = 0
    total_words = 0
    with db.write() as session:
        rows = session.execute(
            select(Article.title, Article.body, Article.author).execution_options(yield_per=500)
        )
        for title, body, author in rows:
            articles += 1
            authors[author] += 1
            words = WORD.findall(f"{title} {body}".lower())
            total_words += len(words)
            counts.update(w for w in words if w not in STOPWORDS)
    return {
        "articles": articles,
        "total_words": total_words,
        "distinct_words": len(counts),
        "top_words": [{"word": w, "count": c} for w, c in counts.most_common(10)],
        "top_authors": [{"author": a, "articles": c} for a, c in authors.most_common(5)],
    }


def build_report(db: Database, report_id: str) -> dict:
    rid = uuid.UUID(str(report_id))
    with db.write() as session:
        report = session.get(Report, rid, with_for_update=True)
        if report is None:
            # Created by a producer whose row we cannot see: create it (upsert by id).
            session.execute(
                insert(Report).values(id=rid, status="pending").on_conflict_do_nothing()
            )
            report = session.get(Report, rid, with_for_update=True)
        if report.status == "success":
            return {"id": str(rid), "status": "success", "applied": False}
        report.status = "started"
        report.started_at = now()
        report.attempts = (report.attempts or 0) + 1
    result = compute_report(db)
    with db.write() as session:
        # Applied once: only a report not yet successful takes the result.
        applied = session.execute(
            update(Report)
            .where(Report.id == rid, Report.status != "success")
            .values(status="success", result=result, finished_at=now(), error=None)
        ).rowcount
    return {"id": str(rid), "status": "success", "applied": bool(applied)}


def fail_report(db: Database, report_id: str, error: str) -> None:
    with db.write() as session:
        session.execute(
            update(Report)
            .where(Report.id == uuid.UUID(str(report_id)), Report.status != "success")
            .values(status="failure", error=error[:2000], finished_at=now())
        )


def slow_count(db: Database, key: str, seconds: float) -> dict:
    """Record this execution, wait `seconds`, then apply the key's effect at most once."""
    with db.write() as session:
        execution = JobExecution(key=key, hostname=hostname(), pid=os.getpid(), seconds=seconds)
        session.add(execution)
        session.flush()
        execution_id = execution.id
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))
    with db.write() as session:
        applied = session.scalar(
            insert(JobEffect)
            .values(key=key, hostname=hostname(), execution_id=execution_id)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(JobEffect.key)
        )
        session.execute(
            update(JobExecution).where(JobExecution.id == execution_id).values(finished_at=now())
        )
        # Applied now (or before): an earlier give-up of this key no longer stands.
        session.execute(delete(JobFailure).where(JobFailure.key == key))
    return {"key": key, "execution_id": execution_id, "applied": applied is not None}


def record_job_failure(db: Database, key: str, error: str, retries: int) -> None:
    """Record that the job ``key`` gave up (the status endpoint shows it as failed)."""
    values = {"hostname": hostname(), "retries": retries, "error": error[:2000], "failed_at": now()}
    with db.write() as session:
        session.execute(
            insert(JobFailure)
            .values(key=key, **values)
            .on_conflict_do_update(index_elements=["key"], set_=values)
        )


def job_status(db: Database, key: str) -> dict:
    def read(session):
        # One snapshot for the three reads: under READ COMMITTED each statement sees its own,
        # and a job finishing between them showed as applied with no finished execution.
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        executions = session.scalars(
            select(JobExecution).where(JobExecution.key == key).order_by(JobExecution.id)
        ).all()
        effect = session.get(JobEffect, key)
        failure = session.get(JobFailure, key)
        return executions, effect, failure

    executions, effect, failure = db.read(read, primary=True)[0]
    if effect is not None:
        status = "applied"
    elif failure is not None:
        status = "failed"
    else:
        status = "pending" if executions else "unknown"
    return {
        "key": key,
        "status": status,
        "error": failure.error if failure and effect is None else None,
        "failed_at": failure.failed_at.isoformat() if failure and effect is None else None,
        "retries": failure.retries if failure and effect is None else None,
        "executions": len(executions),
        "finished_executions": sum(1 for e in executions if e.finished_at is not None),
        "effects": 1 if effect else 0,
        "applied": effect is not None,
        "applied_by": effect.hostname if effect else None,
        "attempts": [
            {
                "id": e.id,
                "hostname": e.hostname,
                "pid": e.pid,
                "seconds": e.seconds,
                "started_at": e.started_at.isoformat(),
                "finished_at": e.finished_at.isoformat() if e.finished_at else None,
            }
            for e in executions
        ],
    }


def record_heartbeat(db: Database, scheduled_by: str) -> dict:
    with db.write() as session:
        count = session.scalar(select(func.count(Article.id))) or 0
        beat = Heartbeat(scheduled_by=scheduled_by, executed_by=hostname(), article_count=count)
        session.add(beat)
        session.flush()
        return {"id": beat.id, "scheduled_by": scheduled_by, "article_count": count}
