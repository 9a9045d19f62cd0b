"""Replicas A and B in front of the real Letta server of the local stack (with Redis).

Cancel through B reaches the run on the Letta server; A killed mid-answer loses nothing:
B resumes the Letta runs from their stored streams and every answer is exact.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from letta_client import AsyncLetta
from sqlalchemy.engine import make_url

from orchestrator import Event
from orchestrator.stack._stack import StackInfo
from orchestrator.testing._modelserver import expected_answer
from tests._redis import RedisProcess
from tests._servers import SpawnedServer
from tests._wait import wait_until
from tests.letta.conftest import CreateAgent
from tests.replicas.conftest import health, start_letta_replica
from tests.replicas.test_replicas import assert_contiguous, read, read_killing, texts
from tests.sessions.conftest import _admin

pytestmark = [pytest.mark.letta]

PERSONAS = (
    "Ines mends fishing nets and speaks slowly.",
    "Bao runs the night ferry and counts the stars.",
)
# Paced by the scripted model so that a kill or a cancel lands mid-answer.
SLOW = "Tell me about the harbour at dawn [[tps=25 words=40]]"


@pytest.fixture
async def shared_database(letta_stack: StackInfo) -> AsyncIterator[str]:
    """A PostgreSQL database of the stack's server, shared by the replicas (sessions)."""
    admin = letta_stack.pg_uri
    name = f"orchestrator_replicas_{uuid.uuid4().hex[:12]}"
    await _admin(admin, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def letta_replicas(
    letta_stack: StackInfo, redis_server: RedisProcess, tmp_path: Path, shared_database: str
) -> Iterator[tuple[SpawnedServer, SpawnedServer]]:
    a = start_letta_replica("A", redis_server, letta_stack.base_url, shared_database, tmp_path)
    b = start_letta_replica("B", redis_server, letta_stack.base_url, shared_database, tmp_path)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


async def _start(client: httpx.AsyncClient, server: SpawnedServer, agents: list[str]) -> str:
    response = await client.post(
        server.url + "/v1/fanouts",
        json={
            "agents": [{"agent_id": a} for a in agents],
            "message": SLOW,
            "options": {"on_disconnect": "continue"},
        },
    )
    assert response.status_code == 201, response.text
    fanout_id: str = response.json()["fanout_id"]
    return fanout_id


async def test_cancel_through_b_cancels_the_run_on_the_letta_server(
    letta_replicas: tuple[SpawnedServer, SpawnedServer],
    scripted_agent: CreateAgent,
    letta_client: AsyncLetta,
) -> None:
    a, b = letta_replicas
    ids = [await scripted_agent(p) for p in PERSONAS]
    async with httpx.AsyncClient(timeout=120) as client:
        fanout_id = await _start(client, a, ids)
        first = await read(client, b, fanout_id, stop_after=8)
        started = {e.agent_id: e.get("run_id") for e in first if e.type == "agent_start"}
        rest = await read(client, b, fanout_id, after=first[-1].index, stop_after=1)
        assert rest[0].index == first[-1].index + 1
        while ids[0] not in started:
            more = await read(client, b, fanout_id, stop_after=len(first) + 8)
            started = {e.agent_id: e.get("run_id") for e in more if e.type == "agent_start"}
        cancel = await client.post(
            f"{b.url}/v1/fanouts/{fanout_id}/cancel", json={"agent_id": ids[0]}
        )
        assert cancel.status_code == 202, cancel.text
        events = await read(client, b, fanout_id)
    assert_contiguous(events)
    ends = {e.agent_id: e for e in events if e.is_terminal}
    assert ends[ids[0]].type == "agent_cancelled"
    assert ends[ids[1]].type == "agent_done"
    assert texts(events)[ids[1]] == expected_answer(PERSONAS[1], SLOW)
    run_id = started[ids[0]]
    assert isinstance(run_id, str)

    async def cancelled() -> bool:
        run = await letta_client.runs.retrieve(run_id)
        return str(run.status) == "cancelled"

    await wait_until(cancelled, f"run {run_id} to be cancelled on the Letta server")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "shutdown"])
async def test_killing_or_stopping_the_owner_mid_answer_loses_nothing(
    letta_replicas: tuple[SpawnedServer, SpawnedServer],
    scripted_agent: CreateAgent,
    how: signal.Signals,
) -> None:
    a, b = letta_replicas
    ids = [await scripted_agent(p) for p in PERSONAS]
    async with httpx.AsyncClient(timeout=180) as client:
        fanout_id = await _start(client, a, ids)

        def both_mid_answer(seen: list[Event]) -> bool:
            text = texts(seen)
            return all(len(text.get(i, "")) > 20 for i in ids)

        events = await read_killing(client, b, a, fanout_id, both_mid_answer, how)
    assert_contiguous(events)
    assert events[-1].type == "fanout_done"
    assert texts(events) == {
        agent: expected_answer(persona, SLOW) for agent, persona in zip(ids, PERSONAS, strict=True)
    }
    summary = events[-1].get("summary")
    assert [summary[i]["state"] for i in ids] == ["done", "done"]
    hub = health(b)["hub"]
    assert isinstance(hub, dict)
    assert hub["takeovers"] == 1


async def test_a_session_turn_taken_over_gets_its_answers_recorded(
    letta_replicas: tuple[SpawnedServer, SpawnedServer], scripted_agent: CreateAgent
) -> None:
    a, b = letta_replicas
    agent = await scripted_agent(PERSONAS[0])
    async with httpx.AsyncClient(timeout=180) as client:
        created = await client.post(a.url + "/v1/sessions", json={"agents": [{"agent_id": agent}]})
        assert created.status_code == 201, created.text
        session_id = created.json()["session_id"]
        turn = await client.post(
            f"{a.url}/v1/sessions/{session_id}/fanouts",
            json={"message": SLOW, "options": {"on_disconnect": "continue"}},
        )
        assert turn.status_code == 201, turn.text
        fanout_id = turn.json()["fanout_id"]
        events = await read_killing(client, b, a, fanout_id, lambda seen: len(seen) == 12)
        assert events[-1].type == "fanout_done"
        (column,) = {e.agent_id for e in events if e.type == "content"}

        async def recorded() -> bool:
            detail = (await client.get(f"{b.url}/v1/sessions/{session_id}")).json()
            answer = detail["turns"][0]["answers"][column]
            return bool(answer["state"] == "done")

        await wait_until(recorded, "B to record the answer of the turn it took over")
        detail = (await client.get(f"{b.url}/v1/sessions/{session_id}")).json()
    answer = detail["turns"][0]["answers"][column]
    assert answer["text"] == expected_answer(PERSONAS[0], SLOW)
    assert answer["run_id"] == next(e.get("run_id") for e in events if e.type == "agent_start")
