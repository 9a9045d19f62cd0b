"""The vote store on SQLite and PostgreSQL: one vote per voter, filters, restarts."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from orchestrator.arena import Vote, VoteColumn, VoteError, VoteFilter, open_vote_store
from orchestrator.sessions import SessionMember, SessionRecord, open_session_store
from orchestrator.sessions._db import VERSION_TABLE

pytestmark = pytest.mark.anyio

A = VoteColumn("agent-a", "agent-a", "Optimist")
B1 = VoteColumn("agent-b.1", "agent-b", "Skeptic (m1)", "p/m1")
B2 = VoteColumn("agent-b.2", "agent-b", "Skeptic (m2)", "p/m2")


def _vote(fanout: str = "f-1", winner: str = "agent-a", **kw: object) -> Vote:
    return Vote(fanout, winner, (A, B1, B2), **kw)  # type: ignore[arg-type]


async def test_the_votes_table_comes_with_migration_0002(database_url: str) -> None:
    async with open_vote_store(database_url) as store, store.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        version = await conn.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    assert {"arena_votes", "sessions"} <= tables
    assert version == "0002"


async def test_votes_survive_a_restart(database_url: str) -> None:
    async with open_vote_store(database_url) as store:
        cast = await store.cast(
            _vote(ranking=("agent-a", "agent-b.2", "agent-b.1"), voter="ann", comment="clear")
        )
        await store.cast(_vote("f-2", "tie", running=("agent-b.1",), preset="trio"))
    assert cast.created_at > 0
    async with open_vote_store(database_url) as again:  # a new store on the same database
        votes = await again.votes()
    assert votes == [cast, votes[1]]
    assert votes[1].winner == "tie"
    assert votes[1].running == ("agent-b.1",)
    assert votes[1].preset == "trio"
    assert votes[0].columns == (A, B1, B2)


async def test_a_repeat_vote_replaces_the_earlier_one(database_url: str) -> None:
    async with open_vote_store(database_url) as store:
        await store.cast(_vote(voter="ann"))
        await store.cast(_vote(voter="bob"))
        await store.cast(_vote(winner="agent-b.1", voter="ann"))
        votes = await store.votes()
    assert sorted((v.voter, v.winner) for v in votes) == [("ann", "agent-b.1"), ("bob", "agent-a")]


async def test_judge_votes_are_kept_per_pair(database_url: str) -> None:
    async with open_vote_store(database_url) as store:
        await store.cast(Vote("f-1", "agent-a", (A, B1), voter="judge:j", pair="agent-a|agent-b.1"))
        await store.cast(Vote("f-1", "tie", (A, B2), voter="judge:j", pair="agent-a|agent-b.2"))
        assert len(await store.votes(VoteFilter(voter="judge:j"))) == 2


async def test_a_foreign_column_is_refused_by_name(database_url: str) -> None:
    async with open_vote_store(database_url) as store:
        with pytest.raises(VoteError, match="'agent-z' is not a column") as info:
            await store.cast(_vote(winner="agent-z"))
        assert (info.value.field, info.value.column) == ("winner", "agent-z")
        with pytest.raises(VoteError, match="ranking: 'nope'") as info:
            await store.cast(_vote(ranking=("agent-a", "nope")))
        assert info.value.field == "ranking"
        assert await store.votes() == []


async def test_filters_by_session_preset_voter_and_time(database_url: str) -> None:
    async with open_session_store(database_url) as sessions:
        await sessions.add_session(
            SessionRecord("s-1", (SessionMember("agent-a", "agent-a", "c1", "Optimist"),))
        )
        await sessions.add_turn("s-1", "f-s", "hello", {"agent-a": "Optimist"})
    async with open_vote_store(database_url) as store:
        in_session = await store.cast(_vote("f-s", voter="ann", created_at=100.0))
        await store.cast(_vote("f-x", voter="bob", preset="trio", created_at=200.0))
        await store.cast(_vote("f-y", voter="ann", created_at=300.0))

        async def fanouts(where: VoteFilter) -> list[str]:
            return [v.fanout_id for v in await store.votes(where)]

        assert in_session.session_id == "s-1"
        assert await fanouts(VoteFilter(session_id="s-1")) == ["f-s"]
        assert await fanouts(VoteFilter(preset="trio")) == ["f-x"]
        assert await fanouts(VoteFilter(voter="ann")) == ["f-s", "f-y"]
        assert await fanouts(VoteFilter(since=200.0)) == ["f-x", "f-y"]
        assert await fanouts(VoteFilter(since=100.0, until=300.0)) == ["f-s", "f-x"]
