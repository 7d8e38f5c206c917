"""`flaskfleet-app migrate` runs the packaged Alembic migrations; running it again is a no-op."""

from servers import run, venv_bin
from sqlalchemy import create_engine, inspect, text

EXPECTED = {
    "alembic_version",
    "articles",
    "tags",
    "article_tags",
    "reports",
    "job_executions",
    "job_effects",
    "job_failures",
    "beat_heartbeats",
}


def test_migrate_twice_is_idempotent(pg, cli_env):
    pg.drop_database("flaskfleet_mig")
    pg.create_database("flaskfleet_mig", "app")
    url = pg.url("app", "app-db-pw-123", "flaskfleet_mig")
    env = cli_env(FLASKFLEET_DATABASE_URL=url)

    first = run([venv_bin("flaskfleet-app"), "migrate"], env)
    assert first.returncode == 0, first.stderr
    assert "migrated from empty to 0002" in first.stdout

    engine = create_engine(url)
    try:
        assert EXPECTED <= set(inspect(engine).get_table_names())
        indexes = {i["name"] for i in inspect(engine).get_indexes("articles")}
        assert {"ix_articles_author", "ix_articles_created_at"} <= indexes
        with engine.connect() as conn:
            conn.execute(text("INSERT INTO articles (title, body, author) VALUES ('k', 'k', 'k')"))
            conn.commit()

        second = run([venv_bin("flaskfleet-app"), "migrate"], env)
        assert second.returncode == 0, second.stderr
        assert "already at revision 0002" in second.stdout
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM articles")) == 1
            assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "0002"
    finally:
        engine.dispose()
        pg.drop_database("flaskfleet_mig")


def test_migrate_unreachable_database_fails_cleanly(cli_env):
    from servers import closed_port

    env = cli_env(
        FLASKFLEET_DATABASE_URL=f"postgresql+psycopg://app:s3cr3t-pw@127.0.0.1:{closed_port()}/x"
    )
    r = run([venv_bin("flaskfleet-app"), "migrate"], env)
    assert r.returncode == 1
    assert "migrate: failed: OperationalError" in r.stderr
    assert "s3cr3t-pw" not in r.stderr
    assert "Traceback" not in r.stderr


def test_migrate_bad_config_exit_2(cli_env):
    r = run([venv_bin("flaskfleet-app"), "migrate"], cli_env(FLASKFLEET_DATABASE_URL="nope"))
    assert r.returncode == 2
    assert "FLASKFLEET_DATABASE_URL is malformed" in r.stderr
