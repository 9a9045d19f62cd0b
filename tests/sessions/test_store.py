"""The session store on SQLite and PostgreSQL: migrations, sessions, turns, answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from orchestrator import ConfigError
from orchestrator.sessions import (
    Answer,
    SessionMember,
    SessionRecord,
    UnknownSessionError,
    async_database_url,
    create_engine,
    default_database_url,
    migrate,
    open_session_store,
)
from orchestrator.sessions._db import VERSION_TABLE, schema_head

pytestmark = pytest.mark.anyio


def _record(session_id: str = "s-1", *, parent: str | None = None) -> SessionRecord:
    return SessionRecord(
        session_id,
        (
            SessionMember("agent-a", "agent-a", "conv-1", "Optimist"),
            SessionMember("agent-b.1", "agent-b", "conv-2", "Skeptic (m1)", "p/m1"),
            SessionMember("agent-b.2", "agent-b", "conv-3", "Skeptic (m2)", "p/m2"),
        ),
        "A title",
        parent,
        1000.0,
    )


@pytest.mark.parametrize(
    ("plain", "expected"),
    [
        ("sqlite:///state.db", "sqlite+aiosqlite:///state.db"),
        ("sqlite:////abs/state.db", "sqlite+aiosqlite:////abs/state.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u:p@h:5/db", "postgresql+asyncpg://u:p@h:5/db"),
        ("postgres://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_plain_urls_get_an_async_driver(plain: str, expected: str) -> None:
    assert async_database_url(plain) == expected


@pytest.mark.parametrize("bad", ["mysql://u@h/db", "not a url", "oracle://x"])
def test_unsupported_urls_are_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="database URL"):
        async_database_url(bad)


def test_default_url_is_sqlite_in_dot_orchestrator_unless_the_env_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ORCHESTRATOR_DATABASE_URL", raising=False)
    assert default_database_url() == f"sqlite:///{Path('.orchestrator') / 'state.db'}"
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", "postgresql://u@h/db")
    assert default_database_url() == "postgresql://u@h/db"


async def test_migrations_create_the_schema_once(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        await migrate(engine)  # idempotent
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            version = await conn.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    finally:
        await engine.dispose()
    assert {"sessions", "session_members", "session_turns", "session_answers"} <= tables
    assert VERSION_TABLE in tables
    assert version == schema_head()


async def test_sessions_round_trip_in_column_order(database_url: str) -> None:
    async with open_session_store(database_url) as store:
        await store.add_session(_record("s-1"))
        await store.add_session(_record("s-2", parent="s-1"))
        got = await store.get_session("s-1")
        assert got == _record("s-1")
        assert [m.column_id for m in got.members] == ["agent-a", "agent-b.1", "agent-b.2"]
        listed = await store.list_sessions()
        assert {r.session_id for r in listed} == {"s-1", "s-2"}
        assert (await store.get_session("s-2")).parent_id == "s-1"


async def test_unknown_session_raises(database_url: str) -> None:
    async with open_session_store(database_url) as store:
        with pytest.raises(UnknownSessionError, match="s-missing"):
            await store.get_session("s-missing")
        with pytest.raises(UnknownSessionError):
            await store.turns("s-missing")
        with pytest.raises(UnknownSessionError):
            await store.add_turn("s-missing", "f-1", "hi", {"a": "A"})
        with pytest.raises(UnknownSessionError):
            await store.delete_session("s-missing")


async def test_turns_start_running_then_record_answers(database_url: str) -> None:
    record = _record()
    labels = {m.column_id: m.label for m in record.members}
    async with open_session_store(database_url) as store:
        await store.add_session(record)
        first = await store.add_turn(record.session_id, "f-1", "first?", labels)
        assert {c: a.state for c, a in first.answers.items()} == dict.fromkeys(labels, "running")
        await store.add_turn(record.session_id, "f-2", "second?", labels)
        await store.record_answers(
            record.session_id,
            "f-1",
            {
                "agent-a": Answer("Optimist", "yes", "done", "run-1"),
                "agent-b.1": Answer("Skeptic (m1)", "", "error", None, "boom"),
                "agent-b.2": Answer("Skeptic (m2)", "par", "cancelled", "run-3"),
            },
        )
        turns = await store.turns(record.session_id)
    assert [(t.fanout_id, t.message) for t in turns] == [("f-1", "first?"), ("f-2", "second?")]
    assert turns[0].answers["agent-a"] == Answer("Optimist", "yes", "done", "run-1")
    assert turns[0].answers["agent-b.1"] == Answer("Skeptic (m1)", "", "error", None, "boom")
    assert turns[0].answers["agent-b.2"].state == "cancelled"
    assert {a.state for a in turns[1].answers.values()} == {"running"}


async def test_fork_copies_turns_and_delete_removes_everything(database_url: str) -> None:
    record = _record()
    labels = {m.column_id: m.label for m in record.members}
    async with open_session_store(database_url) as store:
        await store.add_session(record)
        await store.add_turn(record.session_id, "f-1", "q", labels)
        await store.record_answers(
            record.session_id, "f-1", {"agent-a": Answer("Optimist", "a1", "done", "r1")}
        )
        await store.add_session(_record("s-fork", parent=record.session_id))
        await store.copy_turns(record.session_id, "s-fork")
        await store.add_turn("s-fork", "f-2", "only in the fork", labels)
        parent = await store.turns(record.session_id)
        fork = await store.turns("s-fork")
        assert [t.fanout_id for t in parent] == ["f-1"]
        assert [t.fanout_id for t in fork] == ["f-1", "f-2"]
        assert fork[0].answers["agent-a"].text == "a1"
        removed = await store.delete_session(record.session_id)
        assert removed == record
        with pytest.raises(UnknownSessionError):
            await store.get_session(record.session_id)
        assert [t.fanout_id for t in await store.turns("s-fork")] == ["f-1", "f-2"]


async def test_a_store_reopened_keeps_its_sessions(database_url: str) -> None:
    async with open_session_store(database_url) as store:
        await store.add_session(_record())
    async with open_session_store(database_url) as store:
        assert (await store.get_session("s-1")).title == "A title"
