"""Alembic environment shipped inside the package (works from an installed wheel).

`flaskfleet-app migrate` passes an open connection in config.attributes["connection"];
without one, the primary URL comes from FLASKFLEET_DATABASE_URL.
"""

from alembic import context
from sqlalchemy import create_engine, text

from flaskfleet_app.models import Base

config = context.config
target_metadata = Base.metadata

# Any constant works; it serialises concurrent `migrate` runs from several hosts.
MIGRATION_LOCK_ID = 7_242_019


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from flaskfleet_app.config import Settings

    engine = create_engine(Settings.from_env().database_url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
