"""CSRF protection of the HTML form (Flask-WTF), the JSON API without tokens, and cookies
that are Secure behind TLS (X-Forwarded-Proto from the load balancer) and only there."""

from forms import csrf_token, post_form

ARTICLE = {"title": "Form post", "body": "typed in a browser", "tags": "a, b"}
# What the load balancer adds to a request that reached it over HTTPS (one trusted proxy).
OVER_TLS = {"headers": {"X-Forwarded-Proto": "https"}}


def total(client) -> int:
    return client.get("/api/articles?consistent=1").json["total"]


def set_cookies(response) -> dict[str, set[str]]:
    """name -> attribute names (lower case) of each Set-Cookie header."""
    cookies = {}
    for header in response.headers.getlist("Set-Cookie"):
        name, _, rest = header.partition("=")
        cookies[name] = {a.split("=")[0].strip().lower() for a in rest.split(";")[1:]}
    return cookies


def test_the_form_with_its_token_publishes(client):
    r = post_form(client, ARTICLE)
    assert r.status_code == 303, r.text
    assert b"Form post" in client.get(r.headers["Location"]).data


def test_a_post_without_a_token_is_refused_and_writes_nothing(client):
    r = client.post("/articles", data=ARTICLE)
    assert r.status_code == 400
    assert "The CSRF token is missing." in r.text
    # The form comes back filled in, with a fresh token to publish it again.
    assert 'value="Form post"' in r.text and 'name="csrf_token"' in r.text
    assert total(client) == 0


def test_a_forged_token_is_refused(client):
    csrf_token(client)  # the session holds a real token
    r = client.post("/articles", data={**ARTICLE, "csrf_token": "forged.token.value"})
    assert r.status_code == 400
    assert "The CSRF token is invalid." in r.text
    assert total(client) == 0


def test_a_token_without_its_session_is_refused(app):
    """A forged cross-site post: the attacker's page can carry a token it fetched itself,
    but the victim's browser sends the victim's session (here: none)."""
    attacker, victim = app.test_client(), app.test_client()
    r = victim.post("/articles", data={**ARTICLE, "csrf_token": csrf_token(attacker)})
    assert r.status_code == 400
    assert "The CSRF session token is missing." in r.text
    assert total(victim) == 0


def test_any_app_server_accepts_the_token_of_another(make_app):
    """App servers share the secret key: a form served by one posts to any other."""
    one, two = make_app(), make_app()
    browser = one.test_client()
    token = csrf_token(browser)
    other = two.test_client()
    other.set_cookie("session", browser.get_cookie("session").value)
    r = other.post("/articles", data={**ARTICLE, "csrf_token": token})
    assert r.status_code == 303, r.text


def test_the_json_api_needs_no_token(client):
    r = client.post("/api/articles", json={"title": "api", "body": "b"})
    assert r.status_code == 201, r.json
    url = r.headers["Location"]
    assert client.put(url, json={"title": "put", "body": "b"}).status_code == 200
    assert client.patch(url, json={"title": "patched"}).status_code == 200
    assert client.delete(url).status_code == 200
    # Validated (422), not refused for a token (400); nothing is queued.
    assert client.post("/api/jobs", json={"seconds": 1}).status_code == 422
    assert client.get_cookie("session") is None  # the API never opens a session


def test_cookies_are_secure_behind_tls(client):
    r = client.get("/articles/new", **OVER_TLS)
    assert set_cookies(r)["session"] >= {"secure", "httponly", "samesite", "path"}
    assert "samesite=lax" in r.headers["Set-Cookie"].lower()
    r = post_form(client, ARTICLE, **OVER_TLS)
    assert r.status_code == 303, r.text
    assert set_cookies(r)["ff_ryw"] >= {"secure", "httponly", "samesite"}
    r = client.post("/api/articles", json={"title": "api", "body": "b"}, **OVER_TLS)
    assert "secure" in set_cookies(r)["ff_ryw"]


def test_cookies_work_over_plain_http(client):
    """Without TLS a Secure cookie would never come back: the form would always fail."""
    r = client.get("/articles/new")
    assert set_cookies(r)["session"] >= {"httponly", "samesite"}
    assert "secure" not in set_cookies(r)["session"]
    r = post_form(client, ARTICLE)
    assert r.status_code == 303
    assert "secure" not in set_cookies(r)["ff_ryw"]


def test_a_form_posted_over_tls_from_another_port_is_accepted(client):
    """nginx forwards Host without the port: the lab's https://127.0.0.1:8443 must work."""
    token = csrf_token(client, **OVER_TLS)
    r = client.post(
        "/articles",
        data={**ARTICLE, "csrf_token": token},
        headers={"X-Forwarded-Proto": "https", "Referer": "https://localhost:8443/articles/new"},
    )
    assert r.status_code == 303, r.text
