"""Initial schema: articles, tags, reports, job bookkeeping, beat heartbeats.

Revision ID: 0001
Revises:
Create Date: 2024-01-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "articles",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_articles"),
    )
    op.create_index("ix_articles_author", "articles", ["author"])
    op.create_index("ix_articles_created_at", "articles", ["created_at"])
    op.create_table(
        "tags",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tags"),
        sa.UniqueConstraint("name", name="uq_tags_name"),
    )
    op.create_table(
        "article_tags",
        sa.Column("article_id", sa.BigInteger(), nullable=False),
        sa.Column("tag_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name="fk_article_tags_article_id_articles",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tag_id"], ["tags.id"], name="fk_article_tags_tag_id_tags", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("article_id", "tag_id", name="pk_article_tags"),
    )
    op.create_index("ix_article_tags_tag_id", "article_tags", ["tag_id"])
    op.create_table(
        "reports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("result", postgresql.JSONB(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reports"),
    )
    op.create_index("ix_reports_created_at", "reports", ["created_at"])
    op.create_table(
        "job_executions",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("started_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_job_executions"),
    )
    op.create_index("ix_job_executions_key", "job_executions", ["key"])
    op.create_table(
        "job_effects",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("applied_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("execution_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_job_effects"),
    )
    op.create_table(
        "beat_heartbeats",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("scheduled_by", sa.String(255), nullable=False),
        sa.Column("executed_by", sa.String(255), nullable=False),
        sa.Column("article_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_beat_heartbeats"),
    )
    op.create_index("ix_beat_heartbeats_created_at", "beat_heartbeats", ["created_at"])


def downgrade() -> None:
    op.drop_table("beat_heartbeats")
    op.drop_table("job_effects")
    op.drop_table("job_executions")
    op.drop_table("reports")
    op.drop_table("article_tags")
    op.drop_table("tags")
    op.drop_table("articles")
