"""``SessionStore``: sessions, their turns and answers in the SQL database."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ._db import EngineStore, create_engine, migrate
from ._model import Answer, SessionMember, SessionRecord, Turn, UnknownSessionError
from ._tables import answers, members, sessions, turns

__all__ = ["SessionStore", "open_session_store"]


class SessionStore(EngineStore):
    """Sessions in a SQL database (SQLite or PostgreSQL, through SQLAlchemy's async engine).

    Obtain one with :func:`open_session_store`, which also runs the migrations. Every method
    is one transaction. Unknown session ids raise :class:`UnknownSessionError`.
    """

    async def add_session(self, record: SessionRecord) -> None:
        """Store a new session with its members."""
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(sessions).values(
                    id=record.session_id,
                    title=record.title,
                    parent_id=record.parent_id,
                    created_at=record.created_at or time.time(),
                )
            )
            await conn.execute(
                insert(members),
                [
                    {
                        "session_id": record.session_id,
                        "column_id": m.column_id,
                        "position": n,
                        "agent_id": m.agent_id,
                        "conversation_id": m.conversation_id,
                        "label": m.label,
                        "model": m.model,
                    }
                    for n, m in enumerate(record.members)
                ],
            )

    async def get_session(self, session_id: str) -> SessionRecord:
        """The session of that id (raises :class:`UnknownSessionError`)."""
        async with self.engine.connect() as conn:
            return await self._get(conn, session_id)

    async def _get(self, conn: AsyncConnection, session_id: str) -> SessionRecord:
        row = (await conn.execute(select(sessions).where(sessions.c.id == session_id))).first()
        if row is None:
            raise UnknownSessionError(f"no session {session_id!r}")
        rows = await conn.execute(
            select(members).where(members.c.session_id == session_id).order_by(members.c.position)
        )
        return SessionRecord(
            session_id=row.id,
            title=row.title,
            parent_id=row.parent_id,
            created_at=row.created_at,
            members=tuple(
                SessionMember(m.column_id, m.agent_id, m.conversation_id, m.label, m.model)
                for m in rows
            ),
        )

    async def list_sessions(self, limit: int = 100) -> list[SessionRecord]:
        """The newest sessions first."""
        async with self.engine.connect() as conn:
            ids = await conn.scalars(
                select(sessions.c.id)
                .order_by(sessions.c.created_at.desc(), sessions.c.id)
                .limit(limit)
            )
            return [await self._get(conn, session_id) for session_id in ids.all()]

    async def delete_session(self, session_id: str) -> SessionRecord:
        """Remove a session, its turns and answers; returns what was removed."""
        async with self.engine.begin() as conn:
            record = await self._get(conn, session_id)
            await conn.execute(delete(answers).where(answers.c.session_id == session_id))
            await conn.execute(delete(turns).where(turns.c.session_id == session_id))
            await conn.execute(delete(members).where(members.c.session_id == session_id))
            await conn.execute(delete(sessions).where(sessions.c.id == session_id))
            return record

    async def add_turn(
        self, session_id: str, fanout_id: str, message: str, labels: Mapping[str, str]
    ) -> Turn:
        """Append a turn whose answers (column id -> label) are ``running``."""
        now = time.time()
        async with self.engine.begin() as conn:
            await self._get(conn, session_id)
            position = await conn.scalar(
                select(func.count()).select_from(turns).where(turns.c.session_id == session_id)
            )
            await conn.execute(
                insert(turns).values(
                    session_id=session_id,
                    fanout_id=fanout_id,
                    position=position or 0,
                    message=message,
                    created_at=now,
                )
            )
            await conn.execute(
                insert(answers),
                [
                    {
                        "session_id": session_id,
                        "fanout_id": fanout_id,
                        "column_id": column,
                        "state": "running",
                        "text": "",
                    }
                    for column in labels
                ],
            )
        return Turn(fanout_id, message, now, {c: Answer(label) for c, label in labels.items()})

    async def running_turn(self, fanout_id: str) -> tuple[str, list[str]] | None:
        """The session of the turn ``fanout_id`` and its columns still ``running``, if any."""
        async with self.engine.connect() as conn:
            session_id = await conn.scalar(
                select(turns.c.session_id).where(turns.c.fanout_id == fanout_id)
            )
            if session_id is None:
                return None
            columns = (
                await conn.scalars(
                    select(answers.c.column_id)
                    .where(answers.c.fanout_id == fanout_id, answers.c.state == "running")
                    .order_by(answers.c.column_id)
                )
            ).all()
        return str(session_id), list(columns)

    async def remove_turn(self, session_id: str, fanout_id: str) -> None:
        """Drop a turn and its answers (a fan-out that was refused after all)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(answers).where(
                    answers.c.session_id == session_id, answers.c.fanout_id == fanout_id
                )
            )
            await conn.execute(
                delete(turns).where(
                    turns.c.session_id == session_id, turns.c.fanout_id == fanout_id
                )
            )

    async def record_answers(
        self, session_id: str, fanout_id: str, results: Mapping[str, Answer]
    ) -> None:
        """Write how each member answered a turn (its final text, state and run id)."""
        async with self.engine.begin() as conn:
            for column, answer in results.items():
                await conn.execute(
                    update(answers)
                    .where(
                        answers.c.session_id == session_id,
                        answers.c.fanout_id == fanout_id,
                        answers.c.column_id == column,
                    )
                    .values(
                        state=answer.state,
                        text=answer.text,
                        run_id=answer.run_id,
                        error=answer.error,
                    )
                )

    async def turns(self, session_id: str) -> list[Turn]:
        """The session's turns in order, with the answers as recorded."""
        async with self.engine.connect() as conn:
            record = await self._get(conn, session_id)
            labels = {m.column_id: m.label for m in record.members}
            turn_rows = (
                await conn.execute(
                    select(turns).where(turns.c.session_id == session_id).order_by(turns.c.position)
                )
            ).all()
            answer_rows = (
                await conn.execute(select(answers).where(answers.c.session_id == session_id))
            ).all()
        by_turn: dict[str, dict[str, Answer]] = {}
        for row in answer_rows:
            by_turn.setdefault(row.fanout_id, {})[row.column_id] = Answer(
                labels.get(row.column_id, row.column_id),
                row.text,
                row.state,
                row.run_id,
                row.error,
            )
        return [
            Turn(
                row.fanout_id,
                row.message,
                row.created_at,
                {
                    c: by_turn.get(row.fanout_id, {})[c]
                    for c in labels
                    if c in by_turn.get(row.fanout_id, {})
                },
            )
            for row in turn_rows
        ]

    async def copy_turns(self, source_id: str, target_id: str) -> None:
        """Give ``target_id`` the turns and answers of ``source_id`` (a fork's history)."""
        history = await self.turns(source_id)
        async with self.engine.begin() as conn:
            await self._get(conn, target_id)
            for position, turn in enumerate(history):
                await conn.execute(
                    insert(turns).values(
                        session_id=target_id,
                        fanout_id=turn.fanout_id,
                        position=position,
                        message=turn.message,
                        created_at=turn.created_at,
                    )
                )
                rows = [
                    {
                        "session_id": target_id,
                        "fanout_id": turn.fanout_id,
                        "column_id": column,
                        "state": a.state,
                        "text": a.text,
                        "run_id": a.run_id,
                        "error": a.error,
                    }
                    for column, a in turn.answers.items()
                ]
                if rows:
                    await conn.execute(insert(answers), rows)


@asynccontextmanager
async def open_session_store(
    url: str | None = None, *, migrate_schema: bool = True
) -> AsyncIterator[SessionStore]:
    """A :class:`SessionStore` on ``url`` (default ``$ORCHESTRATOR_DATABASE_URL``, else SQLite
    at ``./.orchestrator/state.db``), its schema migrated to the newest version.

    Plain ``sqlite:///PATH`` and ``postgresql://...`` URLs are accepted. Raises
    :class:`~orchestrator.ConfigError` for an unsupported URL.
    """
    engine = create_engine(url)
    store = SessionStore(engine, owns_engine=True)
    try:
        if migrate_schema:
            await migrate(engine)
        yield store
    finally:
        await store.aclose()
