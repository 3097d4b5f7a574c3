"""comparisons: the blind comparisons still running or waiting for their vote, shared by workers.

Revision ID: comparisons_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "comparisons_0001"
down_revision = None
branch_labels = ("comparisons",)
depends_on = None

REAL = sa.Float().with_variant(sa.REAL(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "comparisons",
        sa.Column("id", sa.Text, primary_key=True),  # the random id the page and the API hold
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("targets", sa.Text, nullable=False),  # JSON list of target names, in column order
        sa.Column("answered", sa.Text),  # JSON list of the columns a vote may rate; NULL while running
        sa.Column("owner", sa.Text, nullable=False),  # the visitor who ran it: only they may vote
        sa.Column("session", sa.Text, nullable=False),  # and the page session it ran in
        sa.Column("state", sa.Text, nullable=False),  # running | waiting
        sa.Column("created", REAL, nullable=False),
        sa.Column("wall_s", REAL),
    )
    op.create_index("comparisons_by_created", "comparisons", ["created"])


def downgrade() -> None:
    op.drop_table("comparisons")
