"""The SQL database behind sessions: URLs, the async engine, and the Alembic migrations.

SQLite is the default (``./.orchestrator/state.db``); PostgreSQL serves several replicas.
Callers give plain URLs (``sqlite:///PATH``, ``postgresql://user:pass@host/db``); the async
driver is picked here (aiosqlite, asyncpg), so one URL works for every tool that speaks
SQL. The schema is created and upgraded by the Alembic migrations shipped in this package
(``migrations/``), with their own version table so that a database shared with another
Alembic project (Letta's, say) keeps both histories apart.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .._core._exceptions import ConfigError

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_PATH",
    "VERSION_TABLE",
    "EngineStore",
    "async_database_url",
    "create_engine",
    "default_database_url",
    "migrate",
    "schema_head",
]

#: The environment variable that names the database when no URL is given.
DATABASE_URL_ENV = "ORCHESTRATOR_DATABASE_URL"

#: Where the default SQLite database lives, relative to the working directory.
DEFAULT_DATABASE_PATH = Path(".orchestrator") / "state.db"

#: Alembic's version table for this project's migrations.
VERSION_TABLE = "orchestrator_alembic_version"

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


class EngineStore:
    """A store over one SQLAlchemy async engine: an async context manager.

    With ``owns_engine`` the store disposes of the engine when closed; otherwise the engine
    is shared (sessions and votes live in one database) and its owner closes it.
    """

    def __init__(self, engine: AsyncEngine, *, owns_engine: bool = False) -> None:
        self.engine = engine
        self._owns_engine = owns_engine
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Dispose of the engine if the store created it. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._owns_engine:
            await self.engine.dispose()


def default_database_url() -> str:
    """``$ORCHESTRATOR_DATABASE_URL``, else SQLite at ``./.orchestrator/state.db``."""
    env = os.environ.get(DATABASE_URL_ENV)
    if env:
        return env
    return f"sqlite:///{DEFAULT_DATABASE_PATH}"


def async_database_url(url: str) -> str:
    """The SQLAlchemy async URL for a plain one (``sqlite:///x.db``, ``postgresql://...``).

    URLs that already name an async driver are kept. Raises :class:`ConfigError` for a URL
    that cannot be parsed or names a database other than SQLite or PostgreSQL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database URL {_redact(url)!r} is not a URL: {exc}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in _DRIVERS:
        raise ConfigError(
            f"database URL {_redact(url)!r}: only sqlite:/// and postgresql:// are supported"
        )
    if (
        (backend == "postgresql" and driver in ("", "psycopg2", "psycopg", "pg8000"))
        or backend == "postgres"
        or (backend == "sqlite" and driver in ("", "pysqlite"))
    ):
        parsed = parsed.set(drivername=_DRIVERS[backend])
    return parsed.render_as_string(hide_password=False)


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable>"


def create_engine(url: str | None = None, **options: Any) -> AsyncEngine:
    """An async engine for ``url`` (default: :func:`default_database_url`).

    A SQLite file's folder is created, and SQLite enforces foreign keys on every connection.
    """
    url = async_database_url(url or default_database_url())
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, **options)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def schema_head() -> str:
    """The newest revision of the shipped migrations (what :func:`migrate` upgrades to)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        raise RuntimeError("no migrations found")
    return str(head)


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    config = _alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database's schema to ``revision`` (Alembic ``upgrade``); idempotent."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, revision)
