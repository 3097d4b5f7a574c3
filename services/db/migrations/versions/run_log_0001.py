"""run log: the runs table as fm-gallery's first schema made it (user_version 1).

Revision ID: run_log_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "run_log_0001"
down_revision = None
branch_labels = ("run_log",)
depends_on = None

# A run log made before Alembic: its `PRAGMA user_version` says which revision its tables match.
ADOPT = {"table": "runs", "by_sqlite_user_version": {1: "run_log_0001", 2: "run_log_0002"}}

REAL = sa.Float().with_variant(sa.REAL(), "sqlite")  # double precision on PostgreSQL


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("tab", sa.Text, nullable=False),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("provider", sa.Text),
        sa.Column("model", sa.Text),
        sa.Column("served_by", sa.Text),
        sa.Column("inputs", sa.Text, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("output", sa.Text),
        sa.Column("image_path", sa.Text),
        sa.Column("latency_s", REAL),
        sa.Column("ttft_s", REAL),
        sa.Column("wall_s", REAL),
        sa.Column("input_tokens", sa.Integer),
        sa.Column("output_tokens", sa.Integer),
        sa.Column("cost_usd", REAL),
        sa.Column("error", sa.Text),
    )
    op.create_index("runs_by_time", "runs", ["created_at"])


def downgrade() -> None:
    op.drop_table("runs")
