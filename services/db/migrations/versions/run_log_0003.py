"""run log: `seq` (insertion order, replacing SQLite's rowid) and `comparison_id` (a real column,
replacing json_extract over params), so that both engines run the same queries.

The table is rebuilt (SQLite cannot add a primary key to a table): rows are copied in their old
insertion order, each comparison id taken out of its row's params.

Revision ID: run_log_0003
Revises: run_log_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "run_log_0003"
down_revision = "run_log_0002"
branch_labels = None
depends_on = None

REAL = sa.Float().with_variant(sa.REAL(), "sqlite")
KEPT = (
    "id, created_at, tab, task, provider, model, served_by, inputs, params, output, image_path, latency_s, "
    "ttft_s, wall_s, input_tokens, output_tokens, cost_usd, error, visitor"
)


def upgrade() -> None:
    op.create_table(
        "runs_new",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("id", sa.Text, nullable=False, unique=True),  # uuid4 hex; also names the run's image file
        sa.Column("created_at", sa.Text, nullable=False),  # when the run started, ISO 8601 UTC
        sa.Column("tab", sa.Text, nullable=False),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("provider", sa.Text),
        sa.Column("model", sa.Text),
        sa.Column("served_by", sa.Text),
        sa.Column("inputs", sa.Text, nullable=False),  # JSON
        sa.Column("params", sa.Text, nullable=False),  # JSON
        sa.Column("output", sa.Text),  # JSON
        sa.Column("image_path", sa.Text),
        sa.Column("latency_s", REAL),
        sa.Column("ttft_s", REAL),
        sa.Column("wall_s", REAL),
        sa.Column("input_tokens", sa.Integer),
        sa.Column("output_tokens", sa.Integer),
        sa.Column("cost_usd", REAL),
        sa.Column("error", sa.Text),
        sa.Column("visitor", sa.Text),
        sa.Column("comparison_id", sa.Text),  # the Compare tab's comparison this run was one side of
    )
    if op.get_bind().dialect.name == "sqlite":
        comparison, order = "json_extract(params, '$.comparison_id')", "rowid"
    else:
        comparison, order = "(params::jsonb ->> 'comparison_id')", "created_at, id"
    op.execute(f"INSERT INTO runs_new ({KEPT}, comparison_id) SELECT {KEPT}, {comparison} FROM runs ORDER BY {order}")
    op.drop_index("runs_by_time", table_name="runs")
    op.drop_table("runs")
    op.rename_table("runs_new", "runs")
    op.create_index("runs_by_time", "runs", ["created_at", "seq"])
    op.create_index("runs_by_comparison", "runs", ["comparison_id"])
    op.create_index("runs_by_visitor", "runs", ["visitor"])


def downgrade() -> None:
    raise NotImplementedError("the run log is not downgraded: restore a backup instead")
