"""inkpot on SQLite with eager Celery tasks: no servers needed."""

import json
import os
import subprocess
import sys
from importlib import resources

import pytest
from flask_migrate import downgrade, upgrade
from inkpot import INDEX_KEY, create_app, sqlalchemy_url
from sqlalchemy import create_engine, inspect, text


def migrated(monkeypatch, url: str) -> None:
    """Upgrade a database to head with the real migrations, as `flask db upgrade` does."""
    with monkeypatch.context() as env:
        env.setenv("INKPOT_SQLALCHEMY_DATABASE_URI", url)
        env.delenv("INKPOT_READ_REPLICAS", raising=False)
        with create_app().app_context():
            upgrade()


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch):
    """Only what a test sets: not INKPOT_* variables of the shell that runs the tests."""
    for name in [n for n in os.environ if n.startswith("INKPOT_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("INKPOT_SQLALCHEMY_DATABASE_URI", f"sqlite:///{tmp_path}/inkpot.db")
    monkeypatch.setenv("INKPOT_RELEASE", "1.0.0-test")
    monkeypatch.setenv("INKPOT_READ_REPLICAS", "[]")
    app = create_app()
    with app.app_context():
        upgrade()
    return app


def post(client, title, body):
    response = client.post("/notes", json={"title": title, "body": body})
    assert response.status_code == 201, response.data
    return response.json["id"]


def test_configuration_comes_from_prefixed_env(app, monkeypatch):
    assert app.config["RELEASE"] == "1.0.0-test"
    assert app.config["READ_REPLICAS"] == []
    assert app.config["CACHE_REDIS"] is None
    assert app.extensions["celery"].conf.task_always_eager  # no broker: tasks run eagerly
    monkeypatch.setenv("INKPOT_CELERY__broker_url", "redis://broker:6380/0")
    monkeypatch.setenv("INKPOT_CELERY__result_backend", "redis://broker:6380/1")
    monkeypatch.setenv("INKPOT_SECRET_KEY", "s3cret")
    monkeypatch.setenv("INKPOT_RELEASE", "7")  # JSON-decoded to an int, shown as text
    other = create_app()
    assert other.config["CELERY"] == {
        "broker_url": "redis://broker:6380/0",
        "result_backend": "redis://broker:6380/1",
    }
    celery = other.extensions["celery"]
    assert celery.conf.broker_url == "redis://broker:6380/0"
    assert celery.conf.result_backend == "redis://broker:6380/1"
    assert not celery.conf.task_always_eager
    assert other.config["SECRET_KEY"] == "s3cret"
    assert other.config["RELEASE"] == "7"


def test_libpq_multi_host_urls_become_sqlalchemy_ones(monkeypatch):
    libpq = "postgresql+psycopg://u:p%40w@h1:5432,h2:5433/inkpot?target_session_attrs=read-write"
    assert sqlalchemy_url(libpq) == (
        "postgresql+psycopg://u:p%40w@/inkpot"
        "?host=h1:5432&host=h2:5433&target_session_attrs=read-write"
    )
    monkeypatch.setenv("INKPOT_SQLALCHEMY_DATABASE_URI", libpq)
    monkeypatch.setenv("INKPOT_READ_REPLICAS", '["postgresql+psycopg://u:pw@h2:5433/inkpot"]')
    app = create_app()
    with app.app_context():  # engines are made, nothing connects
        from inkpot.models import db

        _, args = db.engine.dialect.create_connect_args(db.engine.url)
    assert (args["host"], args["port"], args["password"]) == ("h1,h2", "5432,5433", "p@w")
    assert args["target_session_attrs"] == "read-write"
    (replica,) = app.extensions["inkpot"]["replicas"]
    assert (replica.url.host, replica.url.port) == ("h2", 5433)
    plain = "postgresql+psycopg://u:pw@/inkpot?host=h1:5432&host=h2:5432"
    assert sqlalchemy_url(plain) == plain


def test_a_note_is_written_read_back_and_its_words_counted(app):
    client = app.test_client()
    note_id = post(client, "hello", "one two  three\nfour")
    note = client.get(f"/notes/{note_id}").json
    assert note == {"id": note_id, "title": "hello", "body": "one two  three\nfour", "words": 4}
    # no replica configured: ?from=replica reads the primary
    assert client.get(f"/notes/{note_id}?from=replica").json["words"] == 4


def test_counting_words_is_idempotent(app):
    note_id = post(app.test_client(), "twice", "a b c")
    task = app.extensions["celery"].tasks["inkpot.count_words"]
    assert task.delay(note_id).get() == 3
    assert task.delay(note_id).get() == 3
    assert task.delay(10_000).get() is None  # a note that is gone: nothing to do


def test_an_absent_note_is_a_404(app):
    response = app.test_client().get("/notes/12345")
    assert response.status_code == 404
    assert response.json == {"error": "no such note"}


@pytest.mark.parametrize(
    "payload",
    [{"body": "x"}, {"title": ""}, {"title": 3}, {"title": "t", "body": 5}, ["t"], "t"],
)
def test_a_note_needs_a_title_and_text(app, payload):
    assert app.test_client().post("/notes", json=payload).status_code == 400


def test_reads_go_to_the_replica(tmp_path, monkeypatch):
    """A replica that does not have the note yet: the page and ?from=replica miss it."""
    primary, replica = f"sqlite:///{tmp_path}/primary.db", f"sqlite:///{tmp_path}/replica.db"
    migrated(monkeypatch, primary)
    migrated(monkeypatch, replica)
    monkeypatch.setenv("INKPOT_SQLALCHEMY_DATABASE_URI", primary)
    monkeypatch.setenv("INKPOT_READ_REPLICAS", json.dumps([replica]))
    client = create_app().test_client()
    note_id = post(client, "fresh on the primary", "x")
    assert client.get(f"/notes/{note_id}").json["title"] == "fresh on the primary"
    assert client.get(f"/notes/{note_id}?from=replica").status_code == 404
    assert b"fresh on the primary" not in client.get("/").data
    with create_engine(replica).begin() as conn:  # "replication" catches up
        conn.execute(text("INSERT INTO note (title, body) VALUES ('replicated', 'x')"))
    assert b"replicated" in client.get("/").data
    assert client.get("/notes/1?from=replica").json["title"] == "replicated"


def test_the_index_page_links_the_stylesheet_and_shows_the_edition(app):
    client = app.test_client()
    post(client, "listed <b>", "x y")
    page = client.get("/")
    assert page.status_code == 200
    assert b'href="/assets/inkpot.css"' in page.data
    assert b'<p id="edition">Edition one</p>' in page.data
    assert b"inkpot 1.0.0-test" in page.data
    assert b"listed &lt;b&gt;</a> (2 words)" in page.data


class FakeRedis(dict):
    def get(self, key):
        return dict.get(self, key)

    def set(self, key, value, ex=None):
        assert ex
        self[key] = value

    def delete(self, key):
        self.pop(key, None)


def test_the_list_is_cached_and_a_write_drops_it(app):
    cache = app.extensions["inkpot"]["cache"] = FakeRedis()
    client = app.test_client()
    post(client, "first", "x")
    assert b"first" in client.get("/").data
    assert [n["title"] for n in json.loads(cache[INDEX_KEY])] == ["first"]
    cache[INDEX_KEY] = json.dumps([{"id": 99, "title": "from the cache", "words": None}])
    assert b"from the cache" in client.get("/").data
    post(client, "second", "x")
    assert INDEX_KEY not in cache
    page = client.get("/").data
    assert b"first" in page and b"second" in page


def test_an_unreachable_cache_does_not_break_pages(tmp_path, monkeypatch):
    monkeypatch.setenv("INKPOT_SQLALCHEMY_DATABASE_URI", f"sqlite:///{tmp_path}/c.db")
    monkeypatch.setenv("INKPOT_CACHE_REDIS", "redis://127.0.0.1:1/0")
    app = create_app()
    with app.app_context():
        upgrade()
    client = app.test_client()
    note_id = post(client, "no cache", "a b")
    assert b"no cache</a> (2 words)" in client.get("/").data
    assert client.get(f"/notes/{note_id}").json["words"] == 2


def test_static_files_are_under_assets(app):
    css = app.test_client().get("/assets/inkpot.css")
    assert css.status_code == 200
    assert b"/* inkpot stylesheet */" in css.data
    assert app.static_folder == str(resources.files("inkpot") / "static")


def test_there_is_no_health_or_version_endpoint(app):
    client = app.test_client()
    assert client.get("/healthz").status_code == 404
    assert client.get("/version").status_code == 404
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert rules == {"/", "/notes", "/notes/<int:note_id>", "/assets/<path:filename>"}


def test_migrations_upgrade_a_fresh_database_to_head_and_back(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/fresh.db"
    monkeypatch.setenv("INKPOT_SQLALCHEMY_DATABASE_URI", url)
    app = create_app()
    engine = create_engine(url)
    with app.app_context():
        upgrade()
        columns = {c["name"]: c for c in inspect(engine).get_columns("note")}
        assert list(columns) == ["id", "title", "body", "words", "created_at"]
        assert columns["words"]["nullable"]
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "0001"
        downgrade(revision="base")
        assert not inspect(engine).has_table("note")


def test_flask_db_upgrade_works_from_any_directory(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "INKPOT_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/cli.db"}
    argv = [sys.executable, "-m", "flask", "--app", "inkpot:create_app()", "db", "upgrade"]
    subprocess.run(argv, cwd=elsewhere, env=env, check=True, timeout=120)
    assert inspect(create_engine(f"sqlite:///{tmp_path}/cli.db")).has_table("note")
    assert list(elsewhere.iterdir()) == []


def test_the_package_ships_its_migrations_templates_and_static_files():
    files = resources.files("inkpot")
    for name in (
        "migrations/alembic.ini",
        "migrations/env.py",
        "migrations/script.py.mako",
        "migrations/versions/0001_notes.py",
        "templates/index.html",
        "static/inkpot.css",
    ):
        assert (files / name).is_file(), name


def test_the_worker_module_exposes_the_celery_app(tmp_path, monkeypatch):
    monkeypatch.setenv("INKPOT_SQLALCHEMY_DATABASE_URI", f"sqlite:///{tmp_path}/w.db")
    monkeypatch.setenv("INKPOT_CELERY__broker_url", "redis://127.0.0.1:1/0")
    monkeypatch.delitem(sys.modules, "inkpot.worker", raising=False)
    from inkpot.worker import celery, flask_app

    assert celery is flask_app.extensions["celery"]
    assert "inkpot.count_words" in celery.tasks
    assert celery.conf.broker_url == "redis://127.0.0.1:1/0"
