"""Alembic's entry point: migrations run on the connection connector/storage/schema.py hands over."""

from alembic import context

from connector.storage.schema import bookkeeping
from connector.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection, target_metadata=[metadata, bookkeeping], render_as_batch=connection.dialect.name == "sqlite"
)
with context.begin_transaction():
    context.run_migrations()
