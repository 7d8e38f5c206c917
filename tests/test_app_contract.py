"""The app contract (filter_plugins/flaskfleet_app.py): what a user may write in
flaskfleet_app, what the sample's description is, and the environment it produces."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "filter_plugins"))

import flaskfleet_app as fa  # noqa: E402 - the plugin folder is not a package


@pytest.fixture
def tree(tmp_path):
    """A plain source tree: wsgi.py + requirements.txt, not installable."""
    (tmp_path / "wsgi.py").write_text("app = None\n")
    (tmp_path / "requirements.txt").write_text("Flask==3.1.3\n")
    return tmp_path


def app(path, **fields):
    return {"source": {"path": str(path)}, "wsgi": "wsgi:app", **fields}


def test_no_description_is_the_sample_app():
    spec = fa.flaskfleet_app_contract(None, ROOT)
    assert spec["source"] == {"path": str(ROOT / "app_src")}
    assert spec["wsgi"] == "flaskfleet_app.wsgi:app"
    assert spec["migrate"] == ["flaskfleet-app", "migrate"]
    assert spec["health"] == {"path": "/healthz", "status": 200, "version_field": "version"}
    assert spec["env"]["database_url"] == "FLASKFLEET_DATABASE_URL"
    assert spec["static"] == {"dir": "flaskfleet_app/static", "url": "/static/"}
    # Closed on the public listener: metrics, readiness details, the thread-holding and
    # job-queueing endpoints.
    assert spec["private_paths"] == ["/metrics", "/readyz", "/api/slow", "/api/jobs"]
    # The sample's lock file is what its build uses.
    assert (ROOT / "app_src" / spec["requirements"]).is_file()


def test_a_users_description_does_not_inherit_the_samples_fields(tree):
    spec = fa.flaskfleet_app_contract(app(tree), ROOT)
    assert spec["celery"] == ""
    assert spec["migrate"] == []
    assert spec["env"] == {}
    assert spec["static"]["dir"] == ""
    assert spec["health"] == {"path": "/", "status": 200, "version_field": ""}
    assert spec["gunicorn"]["requirement"].startswith("gunicorn==")
    assert spec["private_paths"] == ["/metrics"]


def test_partial_health_and_static_keep_their_other_defaults(tree):
    spec = fa.flaskfleet_app_contract(
        app(tree, health={"path": "/ping"}, static={"dir": "site/static"}), ROOT
    )
    assert spec["health"] == {"path": "/ping", "status": 200, "version_field": ""}
    assert spec["static"] == {"dir": "site/static", "url": "/static/"}


def test_a_string_command_is_split_like_a_shell(tree):
    spec = fa.flaskfleet_app_contract(
        app(tree, migrate="flask --app 'x:create_app()' db upgrade"), ROOT
    )
    assert spec["migrate"] == ["flask", "--app", "x:create_app()", "db", "upgrade"]


def test_relative_source_paths_start_at_the_project_root(tree):
    spec = fa.flaskfleet_app_contract(app("app_src", wsgi="flaskfleet_app.wsgi:app"), ROOT)
    assert spec["source"]["path"] == str(ROOT / "app_src")


@pytest.mark.parametrize(
    "wsgi", ["myapp.wsgi:app", "myapp:create_app()", "pkg:make_app('prod')", "wsgi", "a.b:c.d"]
)
def test_wsgi_targets_gunicorn_accepts(tree, wsgi):
    assert fa.flaskfleet_app_problems(app(tree, wsgi=wsgi), ROOT) == []


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"wsgi": ""}, "flaskfleet_app.wsgi is required"),
        ({"wsgi": "my app:app"}, "is not a WSGI target"),
        ({"celery": "x:y()"}, "is not a Celery app target"),
        ({"env": {"database": "DB_URL"}}, "flaskfleet_app.env.database: unknown wiring value"),
        ({"env": {"database_url": "DB-URL"}}, "is not an environment variable name"),
        ({"replica_urls_format": "csv"}, "replica_urls_format='csv'"),
        ({"health": {"path": "healthz"}}, "must start with /"),
        ({"health": {"status": "ok"}}, "is not an HTTP status code"),
        ({"static": {"dir": "/srv/static"}}, "relative to the import root"),
        ({"static": {"dir": "x/static", "url": "/"}}, "flaskfleet_app.static.url"),
        ({"system_packages": ["libpq5", "Bad Name"]}, "system_packages"),
        ({"gunicorn": {"hooks": {"after_fork": "m:f"}}}, "not a gunicorn server hook"),
        ({"gunicorn": {"hooks": {"child_exit": "m.f"}}}, "give module:function"),
        ({"database_scheme": "mysql"}, "database_scheme"),
        ({"version": "1.0 beta"}, "flaskfleet_app.version"),
        ({"colour": "blue"}, "unknown key(s) colour"),
        ({"health": "/ping"}, "flaskfleet_app.health must be a mapping"),
        (
            {"static": {"dir": "x/static", "root": "/"}},
            "flaskfleet_app.static: unknown key(s) root",
        ),
        ({"gunicorn": {"hooks": "m:f"}}, "flaskfleet_app.gunicorn.hooks must be a mapping"),
        ({"kind": "project"}, "has no pyproject.toml"),
        ({"requirements": "locked.txt"}, "neither a Python project"),
        ({"private_paths": "/metrics"}, "flaskfleet_app.private_paths"),
        ({"private_paths": ["metrics"]}, "flaskfleet_app.private_paths"),
        ({"private_paths": ["/"]}, "flaskfleet_app.private_paths"),
        ({"private_paths": ["/a b"]}, "flaskfleet_app.private_paths"),
    ],
)
def test_bad_input_names_the_setting(tree, fields, needle):
    problems = fa.flaskfleet_app_problems(app(tree, **fields), ROOT)
    assert any(needle in p for p in problems), problems


def test_a_source_path_with_no_project_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not an app")
    problems = fa.flaskfleet_app_problems(app(tmp_path), ROOT)
    assert any("neither a Python project" in p for p in problems), problems
    problems = fa.flaskfleet_app_problems(app(tmp_path / "missing"), ROOT)
    assert any("is not a directory on the controller" in p for p in problems), problems


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ({}, "flaskfleet_app.source is required"),
        ({"git": "https://example.org/app.git"}, "flaskfleet_app.source.ref is required"),
        ({"path": ".", "git": "x", "ref": "main"}, "exactly one of path, git or wheelhouse"),
        ({"url": "x"}, "unknown key(s) url"),
    ],
)
def test_bad_sources_name_the_fix(source, needle):
    problems = fa.flaskfleet_app_problems({"source": source, "wsgi": "w:app"}, ROOT)
    assert any(needle in p for p in problems), problems


def test_a_wheelhouse_needs_its_distribution(tmp_path):
    (tmp_path / "myapp-1.0-py3-none-any.whl").write_bytes(b"")
    problems = fa.flaskfleet_app_problems(
        {"source": {"wheelhouse": str(tmp_path)}, "wsgi": "m:a"}, ROOT
    )
    assert any("distribution is required" in p for p in problems), problems


def test_workers_without_a_celery_app_are_refused(tree):
    groups = {"workers": ["w1"]}
    problems = fa.flaskfleet_app_problems(app(tree), ROOT, groups)
    assert any("workers group but flaskfleet_app.celery is empty" in p for p in problems)
    assert fa.flaskfleet_app_problems(app(tree, celery="m.worker:celery"), ROOT, groups) == []


def test_the_contract_filter_refuses_what_preflight_reports(tree):
    with pytest.raises(fa.AnsibleFilterError, match="flaskfleet_app.wsgi is required"):
        fa.flaskfleet_app_contract(app(tree, wsgi=None), ROOT)


WIRING = {
    "database_url": "postgresql+psycopg://u:p@/db?host=a:5432&host=b:5432",
    "replica_urls": ["postgresql+psycopg://u:p@b:5432/db", "postgresql+psycopg://u:p@c:5432/db"],
    "cache_url": "redis://:x@r:6379/0",
    "broker_url": "redis://:y@r:6380/0",
    "result_backend": "redis://:y@r:6380/1",
    "secret_key": "s" * 20,
    "release": "1.0.0-0123456789ab",
}


def test_env_maps_wiring_to_the_apps_names_and_nested_flask_config():
    names = {
        "database_url": "INKPOT_SQLALCHEMY_DATABASE_URI",
        "broker_url": "INKPOT_CELERY__broker_url",
        "result_backend": "INKPOT_CELERY__result_backend",
        "replica_urls": "INKPOT_READ_REPLICAS",
        "release": "INKPOT_RELEASE",
    }
    env = fa.flaskfleet_app_env(names, WIRING, "json", {"INKPOT_POOL": 5})
    assert env["INKPOT_SQLALCHEMY_DATABASE_URI"] == WIRING["database_url"]
    assert env["INKPOT_CELERY__broker_url"] == WIRING["broker_url"]
    assert env["INKPOT_CELERY__result_backend"] == WIRING["result_backend"]
    assert json.loads(env["INKPOT_READ_REPLICAS"]) == WIRING["replica_urls"]
    assert env["INKPOT_RELEASE"] == "1.0.0-0123456789ab"
    assert env["INKPOT_POOL"] == "5"
    assert not any(k.startswith("FLASKFLEET_") for k in env)


def test_replica_urls_joined_or_numbered():
    joined = fa.flaskfleet_app_env({"replica_urls": "R"}, WIRING, "joined")
    assert joined == {"R": ",".join(WIRING["replica_urls"])}
    numbered = fa.flaskfleet_app_env({"replica_urls": "R"}, WIRING, "numbered")
    assert numbered == {"R_1": WIRING["replica_urls"][0], "R_2": WIRING["replica_urls"][1]}


def test_extra_env_wins_over_the_wiring():
    env = fa.flaskfleet_app_env({"secret_key": "K"}, WIRING, "joined", {"K": "override"})
    assert env == {"K": "override"}


def test_database_scheme_is_replaced_for_another_driver():
    url = fa.flaskfleet_database_scheme(WIRING["database_url"], "postgresql")
    assert url == "postgresql://u:p@/db?host=a:5432&host=b:5432"
    assert fa.flaskfleet_database_scheme("", "postgresql") == ""
