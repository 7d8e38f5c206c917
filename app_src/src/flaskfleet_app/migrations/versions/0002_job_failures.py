"""Job failures: a slow_count job that gave up after its retries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A new table only: the release before this one runs unchanged against it (expand).
    op.create_table(
        "job_failures",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column(
            "failed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_job_failures"),
    )


def downgrade() -> None:
    op.drop_table("job_failures")
