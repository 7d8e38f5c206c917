"""The one page of the plain-tree example."""

from flask import Blueprint

bp = Blueprint("site", __name__)


@bp.get("/")
def index():
    return "plain tree ok\n", 200, {"Content-Type": "text/plain; charset=utf-8"}
