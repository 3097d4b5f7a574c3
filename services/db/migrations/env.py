"""Alembic's environment for fm-gallery: migrations run on the connection `services.db.schema`
hands over (already in its transaction, holding the migration lock), never from an ini file."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
