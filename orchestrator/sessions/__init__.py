"""Sessions: each user's own Letta conversations, with follow-ups, forks and model comparison.

A :class:`Sessions` service creates sessions (:class:`Session`: members, each an agent, a
conversation, a label and a model), sends fan-outs to them and reads their threads back; a
:class:`SessionStore` keeps them in a SQL database (SQLite by default, PostgreSQL by URL)
whose schema the shipped Alembic migrations create. Needs the ``sessions`` extra (SQLAlchemy, Alembic, aiosqlite, asyncpg).
"""

from __future__ import annotations

try:
    import sqlalchemy as _sqlalchemy  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "orchestrator.sessions needs the 'sessions' extra: pip install 'letta-fanout[sessions]'"
    ) from exc

from ._db import DATABASE_URL_ENV as DATABASE_URL_ENV
from ._db import async_database_url as async_database_url
from ._db import create_engine as create_engine
from ._db import default_database_url as default_database_url
from ._db import migrate as migrate
from ._model import Answer as Answer
from ._model import SessionMember as SessionMember
from ._model import SessionRecord as SessionRecord
from ._model import Turn as Turn
from ._model import UnknownSessionError as UnknownSessionError
from ._sessions import MemberSpec as MemberSpec
from ._sessions import Session as Session
from ._sessions import Sessions as Sessions
from ._store import SessionStore as SessionStore
from ._store import open_session_store as open_session_store

__all__ = [
    "DATABASE_URL_ENV",
    "Answer",
    "MemberSpec",
    "Session",
    "SessionMember",
    "SessionRecord",
    "SessionStore",
    "Sessions",
    "Turn",
    "UnknownSessionError",
    "async_database_url",
    "create_engine",
    "default_database_url",
    "migrate",
    "open_session_store",
]
