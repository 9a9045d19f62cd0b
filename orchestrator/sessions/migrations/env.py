"""Alembic environment: runs on the connection :func:`orchestrator.sessions.migrate` passes."""

from __future__ import annotations

from alembic import context

from orchestrator.sessions._db import VERSION_TABLE
from orchestrator.sessions._tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only through migrate()
    raise RuntimeError("run the migrations with orchestrator.sessions.migrate(engine)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
