"""Both database backends for the session store: SQLite in ``tmp_path`` and PostgreSQL.

PostgreSQL is the local stack's own embedded server (``orchestrator stack up``), with a
database of the project's that the fixture creates for one test and drops afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from orchestrator.sessions import create_engine
from orchestrator.stack._stack import stack_up


async def _admin(uri: str, statement: str) -> None:
    engine = create_engine(uri, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.letta),
    ]
)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A plain database URL (``sqlite:///...`` or ``postgresql://...``) of an empty database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'state.db'}"
        return
    admin_uri = stack_up().pg_uri
    name = f"orchestrator_test_{uuid.uuid4().hex[:12]}"
    await _admin(admin_uri, f'CREATE DATABASE "{name}"')
    url = make_url(admin_uri).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        await _admin(admin_uri, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
