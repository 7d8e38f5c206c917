"""Posting the HTML form as a browser does: with the CSRF token of the page it shows."""

from __future__ import annotations

import re

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client, **kwargs) -> str:
    """The token in the new-article form (GET /articles/new also sets the session cookie)."""
    r = client.get("/articles/new", **kwargs)
    assert r.status_code == 200, r.text
    match = TOKEN.search(r.text)
    assert match, r.text
    return match.group(1)


def post_form(client, data: dict[str, str], **kwargs):
    """POST /articles with ``data`` and the form's token, from a page the client just got."""
    return client.post(
        "/articles", data={**data, "csrf_token": csrf_token(client, **kwargs)}, **kwargs
    )
