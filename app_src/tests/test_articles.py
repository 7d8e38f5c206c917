"""JSON API: CRUD, validation (4xx JSON, never 500), cache hit/invalidation, cache down,
no N+1 on the list page."""

import time

import pytest
from servers import closed_port
from sqlalchemy import event

ARTICLE = {"title": "Hello fleet", "body": "Scaling out with gunicorn.", "tags": ["Ops", "web"]}


def create(client, **fields):
    r = client.post("/api/articles", json={**ARTICLE, **fields})
    assert r.status_code == 201, r.json
    return r


def test_crud_roundtrip(client):
    r = create(client, author="ana")
    article = r.json
    assert r.headers["Location"] == f"/api/articles/{article['id']}"
    assert article["tags"] == ["ops", "web"]
    assert article["author"] == "ana"

    r = client.get(r.headers["Location"])
    assert r.status_code == 200
    assert r.json["title"] == "Hello fleet" and r.json["body"] == ARTICLE["body"]

    r = client.patch(f"/api/articles/{article['id']}", json={"title": "Renamed", "tags": []})
    assert r.status_code == 200 and r.json["title"] == "Renamed" and r.json["tags"] == []
    assert r.json["body"] == ARTICLE["body"]

    r = client.put(f"/api/articles/{article['id']}", json={"title": "Put", "body": "New body"})
    assert r.status_code == 200 and r.json["body"] == "New body"

    r = client.get("/api/articles")
    assert r.json["total"] == 1 and r.json["items"][0]["title"] == "Put"

    assert client.delete(f"/api/articles/{article['id']}").status_code == 200
    assert client.get(f"/api/articles/{article['id']}").status_code == 404
    assert client.delete(f"/api/articles/{article['id']}").status_code == 404


def test_default_author_and_filters(client):
    create(client)
    create(client, author="bo", tags=["db"])
    assert client.get("/api/articles?author=bo").json["total"] == 1
    assert client.get("/api/articles?author=anonymous").json["total"] == 1
    assert client.get("/api/articles?tag=DB").json["total"] == 1
    assert client.get("/api/articles?tag=web").json["total"] == 1


def test_pagination(client):
    for i in range(5):
        create(client, title=f"t{i}")
    r = client.get("/api/articles?per_page=2&page=3")
    assert r.json["total"] == 5 and r.json["pages"] == 3
    assert [a["title"] for a in r.json["items"]] == ["t0"]
    assert client.get("/api/articles?per_page=2&page=1").json["items"][0]["title"] == "t4"


@pytest.mark.parametrize(
    ("kwargs", "status", "needle"),
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "not valid JSON"),
        ({"data": "title=x", "content_type": "application/x-www-form-urlencoded"}, 400, "JSON"),
        ({"json": ["a", "list"]}, 422, "JSON object"),
        ({"json": {"body": "no title"}}, 422, "title"),
        ({"json": {"title": "no body"}}, 422, "body"),
        ({"json": {"title": 5, "body": "x"}}, 422, "must be a string"),
        ({"json": {"title": "  ", "body": "x"}}, 422, "must not be empty"),
        ({"json": {"title": "x" * 201, "body": "x"}}, 422, "at most 200"),
        ({"json": {"title": "t", "body": "b", "tags": "ops"}}, 422, "list of strings"),
        ({"json": {"title": "t", "body": "b", "tags": [1, 2]}}, 422, "list of strings"),
        ({"json": {"title": "t", "body": "b", "extra": 1}}, 422, "unknown field"),
    ],
)
def test_create_validation(client, kwargs, status, needle):
    r = client.post("/api/articles", **kwargs)
    assert r.status_code == status
    assert r.is_json
    assert needle in str(r.json)
    assert client.get("/api/articles").json["total"] == 0


def test_oversized_body_is_413(make_app):
    client = make_app(FLASKFLEET_MAX_CONTENT_LENGTH=4096).test_client()
    r = client.post("/api/articles", json={"title": "big", "body": "x" * 10_000})
    assert r.status_code == 413
    assert r.json["error"]
    r = client.post("/articles", data={"title": "big", "body": "x" * 10_000})
    assert r.status_code == 413


def test_unknown_ids_wrong_methods_bad_args(client):
    assert client.get("/api/articles/999").status_code == 404
    assert client.get("/api/articles/999").json["error"] == "article 999 not found"
    assert client.patch("/api/articles/999", json={"title": "x"}).status_code == 404
    assert client.get("/api/articles/abc").status_code == 404
    r = client.post("/api/articles/1", json=ARTICLE)
    assert r.status_code == 405 and "GET" in r.json["allowed"]
    assert client.delete("/api/articles").status_code == 405
    assert client.get("/api/articles?page=0").status_code == 422
    assert client.get("/api/articles?per_page=1000").status_code == 422
    assert client.get("/api/articles?page=x").status_code == 422
    assert client.get("/api/reports/not-a-uuid").status_code == 404
    assert client.get("/api/reports/5b0c9f2e-1111-4222-8333-944455556666").status_code == 404


def test_patch_validation(client):
    aid = create(client).json["id"]
    assert client.patch(f"/api/articles/{aid}", json={"title": None}).status_code == 422
    assert client.put(f"/api/articles/{aid}", json={"title": "only title"}).status_code == 422
    assert client.get(f"/api/articles/{aid}").json["title"] == ARTICLE["title"]


def test_cache_hit_and_invalidation(app, cache_server):
    client = app.test_client()
    aid = create(client).json["id"]
    client.delete_cookie("ff_ryw")  # behave like another client: no read-your-writes pin

    first = client.get("/api/articles")
    assert first.headers["X-Cache"] == "MISS"
    second = client.get("/api/articles")
    assert second.headers["X-Cache"] == "HIT"
    assert second.json == first.json
    assert second.headers["X-DB"] == first.headers["X-DB"] == "primary"
    assert any(k.startswith(b"flaskfleet:articles:") for k in cache_server.client().keys())

    assert client.get(f"/api/articles/{aid}").headers["X-Cache"] == "MISS"
    assert client.get(f"/api/articles/{aid}").headers["X-Cache"] == "HIT"

    # A write from another client invalidates every cached view.
    other = app.test_client()
    other.patch(f"/api/articles/{aid}", json={"title": "Changed"})
    r = client.get(f"/api/articles/{aid}")
    assert r.headers["X-Cache"] == "MISS" and r.json["title"] == "Changed"
    r = client.get("/api/articles")
    assert r.headers["X-Cache"] == "MISS" and r.json["items"][0]["title"] == "Changed"
    assert client.get("/api/articles").headers["X-Cache"] == "HIT"
    other.post("/api/articles", json=ARTICLE)
    r = client.get("/api/articles")
    assert r.headers["X-Cache"] == "MISS" and r.json["total"] == 2


def test_cache_down_requests_still_succeed(make_app):
    client = make_app(FLASKFLEET_CACHE_URL=f"redis://:pw@127.0.0.1:{closed_port()}/0").test_client()
    aid = create(client).json["id"]
    client.delete_cookie("ff_ryw")
    for _ in range(3):
        r = client.get("/api/articles")
        assert r.status_code == 200 and r.json["total"] == 1
        assert r.headers["X-Cache"] == "MISS"
    assert client.get(f"/api/articles/{aid}").status_code == 200
    assert client.patch(f"/api/articles/{aid}", json={"title": "x"}).status_code == 200
    assert client.get("/").status_code == 200


def test_cache_server_dies_mid_run(app, cache_server):
    """Stop answering (pause the redis process) after the cache was warm: still 200."""
    client = app.test_client()
    create(client)
    client.delete_cookie("ff_ryw")
    client.get("/api/articles")
    assert client.get("/api/articles").headers["X-Cache"] == "HIT"
    cache_server.proc.send_signal(19)  # SIGSTOP: the socket is open but nothing answers
    try:
        t0 = time.monotonic()
        for _ in range(5):
            r = client.get("/api/articles")
            assert r.status_code == 200 and r.json["total"] == 1
        assert time.monotonic() - t0 < 2.0  # short socket timeouts + pause after an error
    finally:
        cache_server.proc.send_signal(18)  # SIGCONT


def test_no_n_plus_one_on_list(app):
    client = app.test_client()
    for i in range(12):
        create(client, title=f"a{i}", tags=[f"t{i}", "common", f"x{i % 3}"])
    client.delete_cookie("ff_ryw")
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    engine = app.extensions["flaskfleet"].db.primary
    event.listen(engine, "before_cursor_execute", count)
    try:
        r = client.get("/api/articles?per_page=12")
        html = client.get("/?page=1")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert r.headers["X-Cache"] == "MISS" and html.headers["X-Cache"] == "MISS"
    assert len(r.json["items"]) == 12
    assert all(len(a["tags"]) == 3 for a in r.json["items"])
    # count + page + one selectin for all tags, per view: independent of the number of rows
    assert len(statements) == 6, statements
