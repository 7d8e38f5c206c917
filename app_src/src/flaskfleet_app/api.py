"""JSON API under /api."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from flask import Blueprint, jsonify, request, url_for
from sqlalchemy import select
from werkzeug.exceptions import NotFound

from . import jobs, service
from .models import Heartbeat, Report
from .service import ValidationError, state

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api")

JOB_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
SEND_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


class BadJSON(Exception):
    pass


@bp.errorhandler(ValidationError)
def _validation_error(exc: ValidationError):
    return jsonify(error="validation failed", fields=exc.errors, status=422), 422


@bp.errorhandler(BadJSON)
def _bad_json(exc: BadJSON):
    return jsonify(error=str(exc), status=400), 400


def json_body() -> object:
    """The request body parsed as JSON; BadJSON (400) when it is not JSON."""
    if not request.is_json:
        raise BadJSON("expected a JSON body with Content-Type: application/json")
    raw = request.get_data(cache=True)  # 413 when larger than MAX_CONTENT_LENGTH
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadJSON("request body is not valid JSON") from None


def _read_headers(response, cache_status: str, served_by: str):
    response.headers["X-Cache"] = cache_status
    response.headers["X-DB"] = served_by
    return response


# -- articles ----------------------------------------------------------------------------------
@bp.get("/articles")
def list_articles():
    page = service.positive_int_arg("page", 1)
    per_page = service.positive_int_arg("per_page", 20, service.MAX_PER_PAGE)
    author = request.args.get("author") or None
    tag = request.args.get("tag") or None
    payload, cache_status, served = service.list_articles(page, per_page, author, tag)
    return _read_headers(jsonify(payload), cache_status, served)


@bp.post("/articles")
def create_article():
    data = service.validate_article(json_body())
    article = service.create_article(data)
    response = jsonify(article)
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_article", article_id=article["id"])
    service.set_ryw_cookie(response)
    return response


@bp.get("/articles/<int:article_id>")
def get_article(article_id: int):
    payload, cache_status, served = service.get_article(article_id)
    if payload is None:
        raise NotFound(f"article {article_id} not found")
    return _read_headers(jsonify(payload), cache_status, served)


@bp.route("/articles/<int:article_id>", methods=["PUT", "PATCH"])
def update_article(article_id: int):
    data = service.validate_article(json_body(), partial=request.method == "PATCH")
    article = service.update_article(article_id, data)
    if article is None:
        raise NotFound(f"article {article_id} not found")
    response = jsonify(article)
    service.set_ryw_cookie(response)
    return response


@bp.delete("/articles/<int:article_id>")
def delete_article(article_id: int):
    if not service.delete_article(article_id):
        raise NotFound(f"article {article_id} not found")
    response = jsonify(deleted=article_id)
    service.set_ryw_cookie(response)
    return response


# -- background jobs ---------------------------------------------------------------------------
def _send(name: str, **options):
    return state().celery.send_task(name, retry=True, retry_policy=SEND_RETRY, **options)


@bp.post("/reports")
def create_report():
    st = state()
    report_id = uuid.uuid4()
    with st.db.write() as session:
        session.add(Report(id=report_id, status="pending"))
    try:
        _send("flaskfleet_app.tasks.build_report", args=[str(report_id)], task_id=str(report_id))
    except Exception as exc:  # noqa: BLE001 - the broker is down: say so, keep the row honest
        log.error("cannot enqueue report %s: %s", report_id, type(exc).__name__)
        jobs.fail_report(st.db, str(report_id), "broker unavailable: task not enqueued")
        return jsonify(error="broker unavailable", id=str(report_id), status=503), 503
    location = url_for("api.get_report", report_id=str(report_id))
    response = jsonify(id=str(report_id), status="pending", location=location)
    response.status_code = 202
    response.headers["Location"] = location
    return response


@bp.get("/reports/<report_id>")
def get_report(report_id: str):
    try:
        rid = uuid.UUID(report_id)
    except ValueError:
        raise NotFound(f"report {report_id} not found") from None
    report, _ = state().db.read(lambda s: s.get(Report, rid), primary=True)
    if report is None:
        raise NotFound(f"report {report_id} not found")
    response = jsonify(report.to_dict())
    response.headers["X-DB"] = "primary"
    return response


@bp.post("/jobs")
def create_job():
    data = json_body()
    if not isinstance(data, dict):
        raise ValidationError({"body": "must be a JSON object"})
    errors = {}
    key = data.get("key")
    if not isinstance(key, str) or not JOB_KEY.match(key):
        errors["key"] = "is required: 1-200 characters of A-Z a-z 0-9 _ . : -"
    seconds = data.get("seconds", 5)
    limit = state().settings.task_time_limit
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        errors["seconds"] = "must be a number"
    elif not 0 <= seconds <= limit:
        errors["seconds"] = f"must be between 0 and FLASKFLEET_TASK_TIME_LIMIT ({limit})"
    if errors:
        raise ValidationError(errors)
    try:
        _send("flaskfleet_app.tasks.slow_count", kwargs={"key": key, "seconds": float(seconds)})
    except Exception as exc:  # noqa: BLE001
        log.error("cannot enqueue job %s: %s", key, type(exc).__name__)
        return jsonify(error="broker unavailable", status=503), 503
    location = url_for("api.get_job", key=key)
    response = jsonify(key=key, seconds=seconds, location=location)
    response.status_code = 202
    response.headers["Location"] = location
    return response


@bp.get("/jobs/<key>")
def get_job(key: str):
    response = jsonify(jobs.job_status(state().db, key))
    response.headers["X-DB"] = "primary"
    return response


@bp.get("/beat")
def beat():
    limit = service.positive_int_arg("limit", 20, 500)

    def read(session):
        rows = session.scalars(select(Heartbeat).order_by(Heartbeat.id.desc()).limit(limit)).all()
        return [r.to_dict() for r in rows]

    rows, served = state().db.read(read, primary=True)
    hosts = sorted({r["scheduled_by"].rsplit(":", 1)[0] for r in rows})
    response = jsonify(heartbeats=rows, count=len(rows), scheduler_hosts=hosts)
    response.headers["X-DB"] = served
    return response


# -- operations helpers ------------------------------------------------------------------------
@bp.get("/slow")
def slow():
    st = state()
    raw = request.args.get("ms")
    if raw in (None, ""):
        ms = st.settings.slow_default_ms
    else:
        try:
            ms = int(raw)
        except ValueError:
            raise ValidationError({"ms": f"must be an integer, got {raw!r}"}) from None
        if ms < 0:
            raise ValidationError({"ms": "must be >= 0"})
    ms = min(ms, st.settings.slow_max_ms)
    t0 = time.perf_counter()
    time.sleep(ms / 1000.0)
    return jsonify(
        slept_ms=ms,
        elapsed_ms=round((time.perf_counter() - t0) * 1000.0, 1),
        instance=st.settings.instance,
    )


@bp.get("/client")
def client():
    """What the app sees of the client after ProxyFix (checks the LB forwards headers)."""
    return jsonify(
        remote_addr=request.remote_addr,
        scheme=request.scheme,
        host=request.host,
        instance=state().settings.instance,
    )
