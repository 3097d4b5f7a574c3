"""evaluations: each evaluation, its finished cells, and the cache of identical calls (the schema before Alembic).

Revision ID: evaluations_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "evaluations_0001"
down_revision = None
branch_labels = ("evaluations",)
depends_on = None

ADOPT = {"table": "evaluations"}

REAL = sa.Float().with_variant(sa.REAL(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("created", REAL, nullable=False),
        sa.Column("visitor", sa.Text),
        sa.Column("spec", sa.Text, nullable=False),  # JSON: dataset, targets, variants, scorer, params, caps
        sa.Column("status", sa.Text, nullable=False),  # running | done | cancelled | stopped | failed
        sa.Column("note", sa.Text),
    )
    op.create_table(
        "cells",
        sa.Column("evaluation", sa.Text, primary_key=True),
        sa.Column("item", sa.Text, primary_key=True),
        sa.Column("target", sa.Text, primary_key=True),
        sa.Column("variant", sa.Text, primary_key=True),
        sa.Column("output", sa.Text),
        sa.Column("answer", sa.Text),
        sa.Column("score", REAL),
        sa.Column("why", sa.Text),
        sa.Column("latency_s", REAL),
        sa.Column("input_tokens", sa.Integer),
        sa.Column("output_tokens", sa.Integer),
        sa.Column("cost_usd", REAL),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("cached", sa.Integer, nullable=False),  # calls served from the cache
        sa.Column("error", sa.Text),
        sa.Column("extra", sa.Text),  # JSON: e.g. {"attack": true}
        sa.Column("position", sa.Integer, nullable=False),  # the cell's place in the grid
    )
    op.create_table(
        "cache",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("latency_s", REAL),
        sa.Column("input_tokens", sa.Integer),
        sa.Column("output_tokens", sa.Integer),
        sa.Column("cost_usd", REAL),
        sa.Column("created", REAL, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cache")
    op.drop_table("cells")
    op.drop_table("evaluations")
