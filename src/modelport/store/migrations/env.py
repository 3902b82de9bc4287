"""Alembic environment: runs migrations on the connection Modelport hands it."""

from __future__ import annotations

from alembic import context

from modelport.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through modelport.store.migrate(engine)")
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
