"""Configuration comes only from the environment; bad input refuses to start, clearly."""

import json

import pytest
from conftest import SECRET
from servers import run, venv_bin

from flaskfleet_app import create_app
from flaskfleet_app.config import ConfigError, Settings, url_servers

GOOD = {
    "FLASKFLEET_DATABASE_URL": "postgresql+psycopg://app:dbpw-secret@10.0.0.5:5432/flaskfleet",
    "FLASKFLEET_CACHE_URL": "redis://:cachepw-secret@10.0.0.6:6379/0",
    "FLASKFLEET_BROKER_URL": "redis://:brokerpw-secret@10.0.0.6:6380/0",
    "FLASKFLEET_SECRET_KEY": SECRET,
}


def problems(env) -> str:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    return str(info.value)


def test_defaults():
    s = Settings.from_env(GOOD)
    assert s.replica_urls == ()
    assert s.result_backend == "redis://:brokerpw-secret@10.0.0.6:6380/1"
    assert (s.db_pool_size, s.db_max_overflow, s.db_pool_recycle) == (5, 5, 1800)
    assert s.db_pool_pre_ping is True
    assert (s.db_connect_timeout, s.cache_timeout, s.slow_default_ms) == (3, 60, 200)
    assert s.trusted_proxies == 1
    assert s.max_content_length == 1024 * 1024
    assert s.task_time_limit == 300 and s.task_soft_time_limit < 300
    # Derived from the time limit (300 s + 60 s), not Celery's default hour.
    assert s.visibility_timeout == 360
    assert (s.task_retries, s.task_retry_base, s.task_retry_max_delay) == (10, 2.0, 30.0)
    assert s.release == "1.0.0"
    assert s.instance  # hostname:pid


def test_all_values_parsed():
    env = {
        **GOOD,
        "FLASKFLEET_REPLICA_URLS": (
            "postgresql+psycopg://app:pw@10.0.0.7:5432/flaskfleet, "
            "postgresql+psycopg://app:pw@10.0.0.8:5432/flaskfleet,"
        ),
        "FLASKFLEET_RESULT_BACKEND": "redis://:pw@10.0.0.6:6380/5",
        "FLASKFLEET_RELEASE": "2.3.4",
        "FLASKFLEET_INSTANCE": "app1:8001",
        "FLASKFLEET_DB_POOL_SIZE": "7",
        "FLASKFLEET_DB_POOL_PRE_PING": "false",
        "FLASKFLEET_TRUSTED_PROXIES": "0",
        "FLASKFLEET_TASK_TIME_LIMIT": "60",
        "FLASKFLEET_TASK_SOFT_TIME_LIMIT": "50",
        "FLASKFLEET_VISIBILITY_TIMEOUT": "61",
    }
    s = Settings.from_env(env)
    assert len(s.replica_urls) == 2
    assert s.result_backend.endswith("/5")
    assert (s.release, s.instance, s.db_pool_size) == ("2.3.4", "app1:8001", 7)
    assert s.db_pool_pre_ping is False and s.trusted_proxies == 0
    assert (s.task_time_limit, s.task_soft_time_limit, s.visibility_timeout) == (60, 50, 61)


@pytest.mark.parametrize(
    "name",
    [
        "FLASKFLEET_DATABASE_URL",
        "FLASKFLEET_CACHE_URL",
        "FLASKFLEET_BROKER_URL",
        "FLASKFLEET_SECRET_KEY",
    ],
)
def test_missing_required(name):
    env = {k: v for k, v in GOOD.items() if k != name}
    message = problems(env)
    assert f"{name} is required" in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("FLASKFLEET_DATABASE_URL", "mysql://u:p@h/db", "backend 'mysql'"),
        ("FLASKFLEET_DATABASE_URL", "postgresql+psycopg2://u:p@h/db", "driver 'psycopg2'"),
        ("FLASKFLEET_DATABASE_URL", "not a url", "malformed"),
        ("FLASKFLEET_DATABASE_URL", "postgresql+psycopg://u:p@h:5432/", "lacks a host or data"),
        ("FLASKFLEET_REPLICA_URLS", "postgresql+psycopg://u:p@h/db,sqlite:///x", "item 2"),
        ("FLASKFLEET_CACHE_URL", "http://h:6379/0", "scheme 'http'"),
        ("FLASKFLEET_BROKER_URL", "redis://:pw@h:6380/abc", "database must be a number"),
        ("FLASKFLEET_BROKER_URL", "redis://:pw@h:notaport/0", "malformed"),
        ("FLASKFLEET_SECRET_KEY", "short", "too short (5 characters)"),
        ("FLASKFLEET_DB_POOL_SIZE", "five", "is not an integer"),
        ("FLASKFLEET_DB_POOL_SIZE", "0", "too small"),
        ("FLASKFLEET_DB_POOL_PRE_PING", "maybe", "not a boolean"),
        ("FLASKFLEET_VISIBILITY_TIMEOUT", "3600", "must be greater than FLASKFLEET_TASK_TIME"),
        ("FLASKFLEET_TASK_RETRY_MAX_DELAY", "60", "must be below 60s"),
        ("FLASKFLEET_TASK_RETRIES", "-1", "too small"),
        (
            "FLASKFLEET_DATABASE_URL",
            "postgresql+psycopg://u:p@/db?target_session_attrs=read-write",
            "lacks a host or data",
        ),
        ("FLASKFLEET_VISIBILITY_TIMEOUT", "300", "must be greater than"),
        ("FLASKFLEET_TASK_SOFT_TIME_LIMIT", "301", "must not exceed"),
        ("FLASKFLEET_SLOW_DEFAULT_MS", "-1", "too small"),
    ],
)
def test_malformed(name, value, expected):
    env = {**GOOD, name: value}
    if value == "3600":  # a visibility timeout below the time limit
        env["FLASKFLEET_TASK_TIME_LIMIT"] = "4000"
    message = problems(env)
    assert name in message
    assert expected in message


def test_secrets_never_in_messages():
    env = {
        **GOOD,
        "FLASKFLEET_DATABASE_URL": "mysql://u:hunter2-db@h/db",
        "FLASKFLEET_CACHE_URL": "http://:hunter2-cache@h/0",
        "FLASKFLEET_SECRET_KEY": "hunter2-short",
    }
    message = problems(env)
    assert "hunter2" not in message
    assert message.count("\n  - ") == 3  # every problem reported at once


def test_create_app_refuses_to_start(monkeypatch):
    for key in GOOD:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("FLASKFLEET_SECRET_KEY", SECRET)
    with pytest.raises(ConfigError, match="FLASKFLEET_DATABASE_URL is required"):
        create_app()


def test_check_config_cli_invalid(cli_env):
    env = cli_env(FLASKFLEET_BROKER_URL=None, FLASKFLEET_SECRET_KEY="tiny-secret")
    r = run([venv_bin("flaskfleet-app"), "check-config"], env)
    assert r.returncode == 2, r.stderr
    assert "FLASKFLEET_BROKER_URL is required" in r.stderr
    assert "FLASKFLEET_SECRET_KEY is too short" in r.stderr
    assert "tiny-secret" not in r.stderr + r.stdout


def test_check_config_cli_ok_redacts(cli_env, base_env):
    r = run([venv_bin("flaskfleet-app"), "check-config", "--json"], cli_env())
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stderr
    for secret in ("app-db-pw-123", "cache-pw-456", "broker-pw-789", SECRET):
        assert secret not in r.stdout
    assert '"release": "1.0.0-test"' in r.stdout


def test_celery_app_refuses_bad_config(cli_env):
    env = cli_env(FLASKFLEET_VISIBILITY_TIMEOUT="10", FLASKFLEET_TASK_TIME_LIMIT="20")
    r = run([venv_bin("python"), "-c", "import flaskfleet_app.celery_app"], env)
    assert r.returncode != 0
    assert "FLASKFLEET_VISIBILITY_TIMEOUT (10s) must be greater than" in r.stderr


MULTI = (
    "postgresql+psycopg://app:pw-secret@/flaskfleet?host=10.0.0.5:5432&host=10.0.0.7:5433"
    "&host=10.0.0.8&target_session_attrs=read-write&connect_timeout=2"
)


def test_a_multi_host_database_url_is_accepted():
    s = Settings.from_env({**GOOD, "FLASKFLEET_DATABASE_URL": MULTI})
    assert s.database_url == MULTI
    assert url_servers(MULTI) == ["10.0.0.5:5432", "10.0.0.7:5433", "10.0.0.8:5432"]
    assert url_servers("postgresql+psycopg://a:b@10.0.0.9/db") == ["10.0.0.9:5432"]
    assert s.redacted()["database_url"].startswith("postgresql+psycopg://app:***@/flaskfleet?host=")
    assert "pw-secret" in s.secrets()


def test_check_config_accepts_the_topology_urls(cli_env):
    r = run(
        [venv_bin("flaskfleet-app"), "check-config", "--json"],
        cli_env(FLASKFLEET_DATABASE_URL=MULTI),
    )
    assert r.returncode == 0, r.stderr
    assert "pw-secret" not in r.stdout
    assert json.loads(r.stdout)["visibility_timeout"] == 360
