"""``VoteStore``: arena votes in the state database (the sessions' SQLite or PostgreSQL)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from ..sessions._db import EngineStore, create_engine, migrate
from ..sessions._tables import turns
from ._model import Vote, VoteColumn
from ._tables import votes

__all__ = ["VoteFilter", "VoteStore", "open_vote_store"]


@dataclass(frozen=True, slots=True)
class VoteFilter:
    """Which votes a leaderboard counts: by session, preset, voter, and time (Unix seconds,
    ``since`` inclusive, ``until`` exclusive). ``None`` leaves a field open."""

    session_id: str | None = None
    preset: str | None = None
    voter: str | None = None
    since: float | None = None
    until: float | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.session_id is not None:
            where.append(votes.c.session_id == self.session_id)
        if self.preset is not None:
            where.append(votes.c.preset == self.preset)
        if self.voter is not None:
            where.append(votes.c.voter == self.voter)
        if self.since is not None:
            where.append(votes.c.created_at >= self.since)
        if self.until is not None:
            where.append(votes.c.created_at < self.until)
        return where


class VoteStore(EngineStore):
    """Votes in a SQL database, through SQLAlchemy's async engine.

    Obtain one with :func:`open_vote_store` (which runs the migrations), or give it the
    engine of a session store: both live in the same database. Every method is one
    transaction.
    """

    async def cast(self, vote: Vote) -> Vote:
        """Store ``vote`` (checked first), replacing the voter's earlier vote on that fan-out.

        A vote of a session's fan-out gets the session's id. Returns the vote as stored.
        Raises :class:`VoteError` for a column that is not part of the fan-out.
        """
        vote.check()
        if vote.session_id is None:
            vote = replace(vote, session_id=await self.session_of(vote.fanout_id))
        vote = replace(vote, created_at=vote.created_at or time.time())
        try:
            await self._replace(vote)
        except IntegrityError:
            # Two votes of one voter at once: the other one's insert won the race. Ours is
            # the later one, so it replaces that one in turn.
            await self._replace(vote)
        return vote

    async def _replace(self, vote: Vote) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(votes).where(
                    votes.c.fanout_id == vote.fanout_id,
                    votes.c.voter == vote.voter,
                    votes.c.pair == vote.pair,
                )
            )
            await conn.execute(insert(votes).values(**_row(vote)))

    async def cast_many(self, batch: Sequence[Vote]) -> None:
        """Store several votes (a judge's verdicts), each replacing its earlier version."""
        for vote in batch:
            await self.cast(vote)

    async def votes(self, where: VoteFilter | None = None) -> list[Vote]:
        """The votes that ``where`` selects, oldest first."""
        query = select(votes).order_by(votes.c.created_at, votes.c.id)
        for clause in (where or VoteFilter()).clauses():
            query = query.where(clause)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_vote(row._mapping) for row in rows]

    async def session_of(self, fanout_id: str) -> str | None:
        """The session whose turn ``fanout_id`` is, if any."""
        async with self.engine.connect() as conn:
            found = await conn.scalar(
                select(turns.c.session_id).where(turns.c.fanout_id == fanout_id).limit(1)
            )
        return str(found) if found is not None else None


def _row(vote: Vote) -> dict[str, Any]:
    return {
        "fanout_id": vote.fanout_id,
        "voter": vote.voter,
        "pair": vote.pair,
        "winner": vote.winner,
        "ranking": json.dumps(list(vote.ranking)),
        "columns": json.dumps([c.to_dict() for c in vote.columns]),
        "running": json.dumps(list(vote.running)),
        "comment": vote.comment,
        "session_id": vote.session_id,
        "preset": vote.preset,
        "created_at": vote.created_at,
    }


def _vote(row: Any) -> Vote:
    return Vote(
        fanout_id=row["fanout_id"],
        winner=row["winner"],
        columns=tuple(
            VoteColumn(c["column_id"], c["agent_id"], c["label"], c.get("model"))
            for c in json.loads(row["columns"])
        ),
        ranking=tuple(json.loads(row["ranking"])),
        voter=row["voter"],
        comment=row["comment"],
        running=tuple(json.loads(row["running"])),
        session_id=row["session_id"],
        preset=row["preset"],
        pair=row["pair"],
        created_at=row["created_at"],
    )


@asynccontextmanager
async def open_vote_store(
    url: str | None = None, *, migrate_schema: bool = True
) -> AsyncIterator[VoteStore]:
    """A :class:`VoteStore` on ``url`` (default ``$ORCHESTRATOR_DATABASE_URL``, else SQLite
    at ``./.orchestrator/state.db``, the sessions' database), its schema migrated.

    Raises :class:`~orchestrator.ConfigError` for an unsupported URL.
    """
    engine = create_engine(url)
    store = VoteStore(engine, owns_engine=True)
    try:
        if migrate_schema:
            await migrate(engine)
        yield store
    finally:
        await store.aclose()
