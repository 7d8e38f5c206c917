"""Run the packaged Alembic migrations against the primary (idempotent)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from .config import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def current_revision(settings: Settings) -> str | None:
    engine = create_engine(
        settings.database_url, connect_args={"connect_timeout": settings.db_connect_timeout}
    )
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def upgrade(settings: Settings, revision: str = "head") -> str | None:
    """Upgrade the primary to `revision`; returns the revision it is at afterwards."""
    engine = create_engine(
        settings.database_url,
        connect_args={
            "connect_timeout": settings.db_connect_timeout,
            "application_name": "flaskfleet-migrate",
        },
    )
    try:
        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
