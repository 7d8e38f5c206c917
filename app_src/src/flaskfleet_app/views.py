"""HTML pages: list, detail, create form (POST -> 303 -> read-your-writes on the primary).

The form carries a CSRF token (Flask-WTF's CSRFProtect, set up in create_app): a POST
without a valid one is refused with 400 before the view runs.
"""

from __future__ import annotations

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import NotFound

from . import service
from .service import ValidationError

bp = Blueprint("views", __name__)


def _page(template: str, cache_status: str, db_label: str, status: int = 200, **context):
    response = make_response(render_template(template, **context), status)
    response.headers["X-Cache"] = cache_status
    response.headers["X-DB"] = db_label
    return response


@bp.get("/")
def index():
    try:
        page = service.positive_int_arg("page", 1)
    except ValidationError:
        page = 1
    payload, cache_status, served = service.list_articles(page, 20)
    return _page("index.html", cache_status, served, listing=payload, served=served)


@bp.get("/articles/<int:article_id>")
def article(article_id: int):
    payload, cache_status, served = service.get_article(article_id)
    if payload is None:
        raise NotFound(f"article {article_id} not found")
    return _page("article.html", cache_status, served, article=payload, served=served)


@bp.get("/articles/new")
def new_article():
    return render_template("new.html", errors={}, form={})


def _submitted() -> dict[str, str]:
    return {name: request.form.get(name, "") for name in ("title", "body", "author", "tags")}


@bp.errorhandler(CSRFError)
def _csrf_refused(exc: CSRFError):
    # The article form is the only HTML form: show it again, filled in, with a fresh token.
    errors = {"form": f"{exc.description} Check the article and publish it again."}
    return render_template("new.html", errors=errors, form=_submitted()), 400


@bp.post("/articles")
def create_article():
    form = _submitted()
    data = {"title": form["title"], "body": form["body"]}
    if form["author"].strip():
        data["author"] = form["author"]
    data["tags"] = [t for t in form["tags"].split(",") if t.strip()]
    try:
        clean = service.validate_article(data)
    except ValidationError as exc:
        return render_template("new.html", errors=exc.errors, form=form), 422
    created = service.create_article(clean)
    response = redirect(url_for("views.article", article_id=created["id"]), code=303)
    service.set_ryw_cookie(response)
    return response
