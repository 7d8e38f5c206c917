"""inkpot on SQLite with eager Celery tasks: no servers needed."""

import pytest
from flask_migrate import upgrade
from inkpot import create_app


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("INKPOT_SQLALCHEMY_DATABASE_URI", f"sqlite:///{tmp_path}/inkpot.db")
    monkeypatch.setenv("INKPOT_RELEASE", "1.0.0-test")
    monkeypatch.setenv("INKPOT_READ_REPLICAS", "[]")
    app = create_app()
    with app.app_context():
        upgrade()  # the real migrations, as `flask db upgrade` runs them
    return app


def test_configuration_comes_from_prefixed_env(app, monkeypatch):
    monkeypatch.setenv("INKPOT_CELERY__broker_url", "redis://broker:6380/0")
    assert create_app().config["CELERY"]["broker_url"] == "redis://broker:6380/0"
    assert app.config["RELEASE"] == "1.0.0-test"
    assert app.config["READ_REPLICAS"] == []


def test_a_note_is_written_read_back_and_its_words_counted(app):
    client = app.test_client()
    created = client.post("/notes", json={"title": "hello", "body": "one two three"})
    assert created.status_code == 201
    note = client.get(f"/notes/{created.json['id']}").json
    assert note == {"id": created.json["id"], "title": "hello", "body": "one two three", "words": 3}
    assert client.get(f"/notes/{created.json['id']}?from=replica").json["title"] == "hello"


def test_a_note_needs_a_title(app):
    assert app.test_client().post("/notes", json={"body": "x"}).status_code == 400


def test_the_index_page_links_the_stylesheet_and_shows_the_edition(app):
    page = app.test_client().get("/")
    assert page.status_code == 200
    assert b'href="/assets/inkpot.css"' in page.data
    assert b"Edition one" in page.data
    assert b"inkpot 1.0.0-test" in page.data


def test_static_files_are_under_assets(app):
    css = app.test_client().get("/assets/inkpot.css")
    assert b"/* inkpot stylesheet */" in css.data


def test_there_is_no_health_or_version_endpoint(app):
    client = app.test_client()
    assert client.get("/healthz").status_code == 404
    assert client.get("/version").status_code == 404
