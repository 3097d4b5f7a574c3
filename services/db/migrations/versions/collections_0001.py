"""collections: each collection's row (what its committed version points at), its source files,
its items and its removed rows (services/collections/tables.py holds the same tables).

Revision ID: collections_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "collections_0001"
down_revision = None
branch_labels = ("collections",)
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("uid", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("dim", sa.Integer),
        sa.Column("created", sa.Text, nullable=False),
        sa.Column("updated", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("vectors_file", sa.Text, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("index_file", sa.Text),
        sa.Column("index_rows", sa.BigInteger, nullable=False),
        sa.Column("trained_rows", sa.BigInteger, nullable=False),
        sa.Column("nlist", sa.Integer),
        sa.Column("nprobe", sa.Integer),
        sa.Column("rerank", sa.Integer),
        sa.Column("index_note", sa.Text, nullable=False),
        sa.Column("backend", sa.Text, nullable=False),
        sa.Column("backend_name", sa.Text),
    )
    op.create_table(
        "collection_sources",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("collection", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
        sa.Column("items", sa.Integer, nullable=False),
        sa.Column("added", sa.Text, nullable=False),
        sa.UniqueConstraint("collection", "name", name="collection_sources_name"),
    )
    op.create_table(
        "collection_items",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("collection", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
        sa.Column("text", sa.Text),
        sa.Column("image", sa.Text),
        sa.Column("row", sa.BigInteger, nullable=False),
    )
    op.create_index("collection_items_by_row", "collection_items", ["collection", "row"])
    op.create_index("collection_items_by_source", "collection_items", ["collection", "source"])
    op.create_table(
        "collection_dead",
        sa.Column("collection", sa.Text, primary_key=True),
        sa.Column("row", sa.BigInteger, primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("collection_dead")
    op.drop_table("collection_items")
    op.drop_table("collection_sources")
    op.drop_table("collections")
