"""leaderboard: one row per blind vote, and each task's Elo ratings (the schema before Alembic).

Revision ID: leaderboard_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "leaderboard_0001"
down_revision = None
branch_labels = ("leaderboard",)
depends_on = None

ADOPT = {"table": "votes"}  # a leaderboard made before Alembic holds exactly these tables

REAL = sa.Float().with_variant(sa.REAL(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "votes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("comparison_id", sa.Text, nullable=False, unique=True),  # one vote per comparison
        sa.Column("targets", sa.Text, nullable=False),  # JSON list of the rated targets' names
        sa.Column("winner", sa.Text),  # NULL for a tie
        sa.Column("voted_at", REAL, nullable=False),
    )
    op.create_table(
        "ratings",
        sa.Column("task", sa.Text, primary_key=True),
        sa.Column("target", sa.Text, primary_key=True),
        sa.Column("rating", REAL, nullable=False),
        sa.Column("wins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("ties", sa.Integer, nullable=False, server_default="0"),
        sa.Column("losses", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("ratings")
    op.drop_table("votes")
