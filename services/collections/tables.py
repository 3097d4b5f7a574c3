"""The collections' metadata tables, in SQLAlchemy Core: the same four tables in each collection's
own SQLite file (one collection in it: the embedded default) and in the shared database
(`FMG_DATABASE_URL`: every collection of every worker and machine, created by the `collections`
Alembic branch, `services/db/migrations/versions/collections_0001.py`, which must match these).
"""

from __future__ import annotations

import sqlalchemy as sa

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only

meta = sa.MetaData()

collections = sa.Table(
    "collections",
    meta,
    sa.Column("uid", sa.Text, primary_key=True),  # random: a collection re-created under an old name is another one
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("kind", sa.Text, nullable=False),  # text | image
    sa.Column("provider", sa.Text, nullable=False),  # the embedder that built it
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("dim", sa.Integer),  # set by the first vectors added
    sa.Column("created", sa.Text, nullable=False),  # ISO 8601 UTC
    sa.Column("updated", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # +1 at every commit: readers reload when it moves
    sa.Column("vectors_file", sa.Text, nullable=False),  # rows [0, rows) of it are committed (embedded)
    sa.Column("rows", sa.BigInteger, nullable=False),  # rows [0, rows) are committed (Qdrant: point ids)
    sa.Column("index_file", sa.Text),  # the approximate index, or NULL: exact search
    sa.Column("index_rows", sa.BigInteger, nullable=False),  # rows [0, index_rows) are in it
    sa.Column("trained_rows", sa.BigInteger, nullable=False),  # rows when the index was last built
    sa.Column("nlist", sa.Integer),
    sa.Column("nprobe", sa.Integer),
    sa.Column("rerank", sa.Integer),  # candidates re-scored exactly per result; NULL: the codes are exact
    sa.Column("index_note", sa.Text, nullable=False),  # how it is searched, in words
    sa.Column("backend", sa.Text, nullable=False),  # where the vectors are, for good: embedded | qdrant
    sa.Column("backend_name", sa.Text),  # the collection's name in that backend (Qdrant)
)

sources = sa.Table(
    "collection_sources",
    meta,
    sa.Column("id", ID, primary_key=True, autoincrement=True),  # the order files were added in
    sa.Column("collection", sa.Text, nullable=False),  # collections.uid
    sa.Column("name", sa.Text, nullable=False),  # the uploaded file's name
    sa.Column("hash", sa.Text, nullable=False),  # sha256 of its bytes: an unchanged file is not embedded again
    sa.Column("items", sa.Integer, nullable=False),
    sa.Column("added", sa.Text, nullable=False),
    sa.UniqueConstraint("collection", "name", name="collection_sources_name"),
)

items = sa.Table(
    "collection_items",
    meta,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("collection", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("hash", sa.Text, nullable=False),  # the source's content hash
    sa.Column("text", sa.Text),  # a passage (text collections)
    sa.Column("image", sa.Text),  # a stored image, relative to the collection's folder
    sa.Column("row", sa.BigInteger, nullable=False),  # its vector's row (Qdrant: its point id)
    sa.Index("collection_items_by_row", "collection", "row"),
    sa.Index("collection_items_by_source", "collection", "source"),
)

dead = sa.Table(  # rows of removed items, until compaction (Qdrant: until their points are deleted)
    "collection_dead",
    meta,
    sa.Column("collection", sa.Text, primary_key=True),
    sa.Column("row", sa.BigInteger, primary_key=True),
)
