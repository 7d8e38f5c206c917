"""/healthz, /version, /readyz (bounded, never hangs), /metrics, X-Served-By, ProxyFix."""

import time

import pytest
from servers import Blackhole, closed_port


def test_healthz_no_io(make_app):
    # Every dependency unreachable: healthz does no I/O and still answers.
    port = closed_port()
    app = make_app(
        FLASKFLEET_DATABASE_URL=f"postgresql+psycopg://a:b@127.0.0.1:{port}/x",
        FLASKFLEET_CACHE_URL=f"redis://127.0.0.1:{port}/0",
        FLASKFLEET_BROKER_URL=f"redis://127.0.0.1:{port}/0",
    )
    r = app.test_client().get("/healthz")
    assert r.status_code == 200
    assert r.json == {"status": "ok", "version": "1.0.0-test", "instance": "test:1"}


def test_version(client):
    r = client.get("/version")
    assert r.json["release"] == "1.0.0-test"
    assert r.json["version"] == "1.0.0"
    assert r.headers["X-Served-By"] == "test:1"


def test_served_by_on_errors_too(client):
    r = client.get("/no-such-page")
    assert r.status_code == 404
    assert r.headers["X-Served-By"] == "test:1"
    assert r.json["error"]


def test_readyz_ok(make_app, replica_url):
    client = make_app(FLASKFLEET_REPLICA_URLS=replica_url).test_client()
    r = client.get("/readyz")
    assert r.status_code == 200, r.json
    assert r.json["status"] == "ok"
    for name in ("primary", "replica1", "cache", "broker"):
        assert r.json[name]["ok"] is True
        assert r.json[name]["ms"] >= 0
        assert r.json[name]["error"] is None


@pytest.mark.parametrize("down", ["primary", "replica1", "cache", "broker"])
def test_readyz_503_when_a_dependency_is_down(make_app, replica_url, down):
    port = closed_port()
    urls = {
        "primary": ("FLASKFLEET_DATABASE_URL", f"postgresql+psycopg://a:pw@127.0.0.1:{port}/x"),
        "replica1": ("FLASKFLEET_REPLICA_URLS", f"postgresql+psycopg://a:pw@127.0.0.1:{port}/x"),
        "cache": ("FLASKFLEET_CACHE_URL", f"redis://:pw@127.0.0.1:{port}/0"),
        "broker": ("FLASKFLEET_BROKER_URL", f"redis://:pw@127.0.0.1:{port}/0"),
    }
    overrides = {"FLASKFLEET_REPLICA_URLS": replica_url}
    overrides[urls[down][0]] = urls[down][1]
    client = make_app(**overrides).test_client()
    t0 = time.monotonic()
    r = client.get("/readyz")
    assert time.monotonic() - t0 < 2.0
    assert r.status_code == 503
    assert r.json["status"] == "unavailable"
    assert r.json[down]["ok"] is False
    assert r.json[down]["error"]
    assert "pw@" not in r.json[down]["error"]
    for name in {"primary", "replica1", "cache", "broker"} - {down}:
        assert r.json[name]["ok"] is True, r.json


def test_readyz_never_hangs_on_a_hung_server(make_app):
    hole = Blackhole()  # accepts TCP connections and never says a word
    try:
        client = make_app(
            FLASKFLEET_DATABASE_URL=f"postgresql+psycopg://a:b@127.0.0.1:{hole.port}/x",
            FLASKFLEET_CACHE_URL=f"redis://:pw@127.0.0.1:{hole.port}/0",
            FLASKFLEET_BROKER_URL=f"redis://:pw@127.0.0.1:{hole.port}/0",
        ).test_client()
        for _ in range(2):
            t0 = time.monotonic()
            r = client.get("/readyz")
            elapsed = time.monotonic() - t0
            assert elapsed < 2.0
            assert r.status_code == 503
            for name in ("primary", "cache", "broker"):
                assert r.json[name]["ok"] is False
            assert "timed out" in r.json["primary"]["error"].lower()
    finally:
        hole.close()


def test_metrics(client):
    client.get("/healthz")
    client.get("/healthz")
    client.post("/healthz")
    client.get("/api/articles/424242")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.content_type.startswith("text/plain")
    text = r.get_data(as_text=True)
    assert 'flaskfleet_http_requests_total{endpoint="/healthz",method="GET",status="200"}' in text
    # No route matched: one bounded label value, not the raw path.
    assert 'endpoint="<unmatched>",method="POST",status="405"' in text
    assert 'endpoint="/api/articles/<int:article_id>",method="GET",status="404"' in text
    assert "flaskfleet_http_request_duration_seconds_bucket{" in text


def test_proxyfix_trusts_one_hop(client):
    r = client.get(
        "/api/client",
        headers={
            "Host": "localhost",
            "X-Forwarded-Port": "8443",
            "X-Forwarded-For": "203.0.113.9, 198.51.100.7",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "fleet.example",
        },
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    # One trusted proxy: the client is the last address it appended.
    assert r.json["remote_addr"] == "198.51.100.7"
    assert r.json["scheme"] == "https"
    # X-Forwarded-Host is never trusted: the Host header (one of nginx's server names) stays.
    assert r.json["host"] == "localhost"


def test_proxyfix_disabled(make_app):
    client = make_app(FLASKFLEET_TRUSTED_PROXIES=0).test_client()
    r = client.get(
        "/api/client",
        headers={"X-Forwarded-For": "203.0.113.9"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert r.json["remote_addr"] == "10.0.0.2"


def test_static_css(client):
    r = client.get("/static/style.css")
    assert r.status_code == 200
    assert "text/css" in r.content_type


def test_slow_endpoint(make_app):
    client = make_app(FLASKFLEET_SLOW_DEFAULT_MS=50).test_client()
    t0 = time.monotonic()
    r = client.get("/api/slow")
    assert r.status_code == 200 and r.json["slept_ms"] == 50
    assert time.monotonic() - t0 >= 0.05
    assert client.get("/api/slow?ms=120").json["slept_ms"] == 120
    assert client.get("/api/slow?ms=abc").status_code == 422
    assert client.get("/api/slow?ms=-5").status_code == 422
