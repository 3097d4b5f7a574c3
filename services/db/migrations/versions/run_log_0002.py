"""run log: who ran it (`visitor`, a pseudonym; NULL for the owner) (user_version 2).

Revision ID: run_log_0002
Revises: run_log_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "run_log_0002"
down_revision = "run_log_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("visitor", sa.Text))


def downgrade() -> None:
    op.drop_column("runs", "visitor")
