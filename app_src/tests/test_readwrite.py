"""Read/write split: writes on the primary, reads on the replica, fallback + breaker, and
read-your-writes after the HTML form's 303 redirect.

The 'replica' is a second database on the same server whose contents differ from the
primary's, so every read shows which one served it."""

import time

from forms import post_form
from servers import closed_port
from sqlalchemy import create_engine, text


def seed_replica(replica_url, title="only on the replica"):
    engine = create_engine(replica_url)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO articles (title, body, author) VALUES (:t, 'replica body', 'rep')"),
            {"t": title},
        )
    engine.dispose()


def test_reads_go_to_the_replica_writes_to_the_primary(make_app, replica_url):
    seed_replica(replica_url)
    client = make_app(FLASKFLEET_REPLICA_URLS=replica_url).test_client()
    r = client.post("/api/articles", json={"title": "on the primary", "body": "b"})
    assert r.status_code == 201
    written = r.json["id"]

    # The writer is pinned to the primary for a few seconds: it sees its own write at once.
    r = client.get("/api/articles")
    assert r.headers["X-DB"] == "primary"
    assert [a["title"] for a in r.json["items"]] == ["on the primary"]
    assert client.get(f"/api/articles/{written}").json["title"] == "on the primary"

    # Everyone else reads from the replica (which here holds different rows).
    client.delete_cookie("ff_ryw")
    r = client.get("/api/articles")
    assert r.headers["X-DB"] == "replica"
    assert [a["title"] for a in r.json["items"]] == ["only on the replica"]
    r = client.get("/api/articles?consistent=1")
    assert r.headers["X-DB"] == "primary"


def test_a_row_missing_on_a_lagging_replica_is_read_from_the_primary(make_app, replica_url):
    client = make_app(FLASKFLEET_REPLICA_URLS=replica_url).test_client()
    written = client.post("/api/articles", json={"title": "not replayed yet", "body": "b"}).json
    client.delete_cookie("ff_ryw")  # another client: its reads go to the replica
    assert client.get("/api/articles").headers["X-DB"] == "replica"
    r = client.get(f"/api/articles/{written['id']}")
    assert r.status_code == 200, r.text
    assert r.headers["X-DB"] == "primary"
    assert r.json["title"] == "not replayed yet"
    assert client.get("/api/articles/999999").status_code == 404


def test_replica_down_falls_back_to_primary_and_breaker_opens(make_app):
    dead = f"postgresql+psycopg://app:pw@127.0.0.1:{closed_port()}/flaskfleet"
    app = make_app(FLASKFLEET_REPLICA_URLS=dead)
    client = app.test_client()
    client.post("/api/articles", json={"title": "t", "body": "b"})
    client.delete_cookie("ff_ryw")
    r = client.get("/api/articles")
    assert r.status_code == 200 and r.json["total"] == 1
    assert r.headers["X-DB"] == "primary"
    replica = app.extensions["flaskfleet"].db.replicas[0]
    assert replica.down_until > time.monotonic()  # paused: not retried on every request
    r = client.get("/api/articles?page=2")
    assert r.status_code == 200 and r.headers["X-DB"] == "primary"


def test_round_robin_skips_only_the_dead_replica(make_app, replica_url):
    seed_replica(replica_url)
    dead = f"postgresql+psycopg://app:pw@127.0.0.1:{closed_port()}/flaskfleet"
    app = make_app(FLASKFLEET_REPLICA_URLS=f"{dead},{replica_url}")
    client = app.test_client()
    for page in range(1, 5):  # distinct keys: no cache hits
        r = client.get(f"/api/articles?per_page={page}")
        assert r.status_code == 200
        assert r.headers["X-DB"] == "replica"
        assert r.json["total"] == 1


def test_html_form_post_redirect_reads_own_write_from_primary(make_app, replica_url):
    seed_replica(replica_url)
    client = make_app(FLASKFLEET_REPLICA_URLS=replica_url).test_client()
    r = client.get("/articles/new")
    assert r.status_code == 200 and b"<form" in r.data
    r = post_form(client, {"title": "Form post", "body": "typed in a browser", "tags": "a, b"})
    assert r.status_code == 303
    location = r.headers["Location"]
    assert location.startswith("/articles/")
    r = client.get(location)
    assert r.status_code == 200
    assert r.headers["X-DB"] == "primary"
    assert b"Form post" in r.data and b"typed in a browser" in r.data
    # A browser without the pin reads the replica, which holds a different row 1.
    other = client.application.test_client()
    r = other.get(location)
    assert r.headers["X-DB"] == "replica"
    assert b"Form post" not in r.data and b"only on the replica" in r.data
    assert other.get("/").headers["X-DB"] == "replica"
    assert b"only on the replica" in other.get("/").data


def test_html_form_validation(client):
    r = post_form(client, {"title": "", "body": "x"})
    assert r.status_code == 422
    assert b"title: must not be empty" in r.data


def test_forged_pin_cookie_is_ignored(make_app, replica_url):
    client = make_app(FLASKFLEET_REPLICA_URLS=replica_url).test_client()
    client.set_cookie("ff_ryw", "1.forged.signature")
    assert client.get("/api/articles").headers["X-DB"] == "replica"
