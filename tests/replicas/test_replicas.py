"""Replicas A and B (real uvicorn processes) share fan-outs through a real Redis.

Any replica serves, resumes and cancels any fan-out; a replica killed with SIGKILL loses no
answer; Redis going away and coming back refuses new fan-outs (503), then recovers.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from orchestrator import Event
from tests._redis import RedisProcess
from tests._servers import SpawnedServer
from tests._wait import wait_until
from tests.replicas._agents import AGENTS, answer
from tests.replicas.conftest import health, start_replica

SSE = {"Accept": "text/event-stream"}


def body(*agents: str, on_disconnect: str = "continue", **options: Any) -> dict[str, Any]:
    return {
        "agents": [{"agent_id": a} for a in agents],
        "message": "go",
        "options": {"on_disconnect": on_disconnect, **options},
    }


async def start(client: httpx.AsyncClient, server: SpawnedServer, *agents: str) -> str:
    response = await client.post(server.url + "/v1/fanouts", json=body(*agents))
    assert response.status_code == 201, response.text
    fanout_id: str = response.json()["fanout_id"]
    return fanout_id


async def read(
    client: httpx.AsyncClient,
    server: SpawnedServer,
    fanout_id: str,
    *,
    after: int | None = None,
    stop_after: int | None = None,
) -> list[Event]:
    """Read the events on ``server`` (resuming after ``after``), ``stop_after`` at most."""
    headers = dict(SSE)
    if after is not None:
        headers["Last-Event-ID"] = str(after)
    events: list[Event] = []
    url = f"{server.url}/v1/fanouts/{fanout_id}/events"
    async with aconnect_sse(client, "GET", url, headers=headers) as source:
        assert source.response.status_code == 200
        async for sse in source.aiter_sse():
            events.append(Event.from_json(sse.data))
            if stop_after is not None and len(events) >= stop_after:
                break
    return events


async def read_killing(
    client: httpx.AsyncClient,
    reader: SpawnedServer,
    owner: SpawnedServer,
    fanout_id: str,
    when: Callable[[list[Event]], bool],
    how: signal.Signals = signal.SIGKILL,
) -> list[Event]:
    """Read the fan-out on ``reader`` to its end; send ``owner`` the signal ``how`` the first
    time ``when(events so far)`` holds (it must, once), and wait until it has exited."""
    events: list[Event] = []
    killed = False
    url = f"{reader.url}/v1/fanouts/{fanout_id}/events"
    async with aconnect_sse(client, "GET", url, headers=SSE) as source:
        async for sse in source.aiter_sse():
            events.append(Event.from_json(sse.data))
            if not killed and when(events):
                os.kill(owner.process.pid, how)
                killed = True
    assert killed, f"the owner was never signalled; events: {[e.type for e in events]}"
    owner.process.wait()
    return events


def texts(events: list[Event]) -> dict[str, str]:
    out: dict[str, str] = {}
    for event in events:
        if event.type == "content" and event.agent_id is not None:
            out[event.agent_id] = out.get(event.agent_id, "") + event.delta
    return out


def assert_contiguous(events: list[Event]) -> None:
    assert [e.index for e in events] == list(range(events[0].index, events[0].index + len(events)))
    seqs: dict[str, int] = {}
    for event in events:
        if event.agent_id is not None:
            assert event.seq == seqs.get(event.agent_id, 0) + 1, event
            seqs[event.agent_id] = event.seq


async def test_started_on_a_read_and_resumed_on_b_cancelled_through_b(
    replicas: tuple[SpawnedServer, SpawnedServer],
) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        fanout_id = await start(client, a, *AGENTS)
        first = await read(client, b, fanout_id, stop_after=40)
        rest = await read(client, b, fanout_id, after=first[-1].index, stop_after=10)
        assert rest[0].index == first[-1].index + 1
        cancel = await client.post(
            f"{b.url}/v1/fanouts/{fanout_id}/cancel", json={"agent_id": "alpha"}
        )
        assert cancel.status_code == 202, cancel.text
        assert cancel.json()["cancelled"] is True
        events = await read(client, b, fanout_id)  # from the start, on B, to the end
        assert_contiguous(events)
        assert events[-1].type == "fanout_done"
        ends = {e.agent_id: e for e in events if e.is_terminal}
        assert ends["alpha"].type == "agent_cancelled"
        assert ends["alpha"].get("reason") == "user"
        assert texts(events)["beta"] == answer("beta")
        # Both replicas list it, and the owner is A; A's copy equals B's.
        for server in (a, b):
            listed = (await client.get(server.url + "/v1/fanouts")).json()["fanouts"]
            row = next(r for r in listed if r["fanout_id"] == fanout_id)
            assert row["owner"] == "A"
        on_a = await read(client, a, fanout_id)
        assert [e.to_dict() for e in on_a] == [e.to_dict() for e in events]


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "shutdown"])
async def test_a_killed_or_stopped_owner_loses_no_answer(
    replicas: tuple[SpawnedServer, SpawnedServer], how: signal.Signals
) -> None:
    """SIGKILL: B takes over once A's lease runs out. SIGTERM: A hands its fan-outs over
    (leaving the runs going) and B takes them at once."""
    a, b = replicas
    async with httpx.AsyncClient(timeout=60) as client:
        fanout_id = await start(client, a, *AGENTS)
        # Mid-answer: 60 of about 460 events.
        events = await read_killing(client, b, a, fanout_id, lambda seen: len(seen) == 60, how)
        assert_contiguous(events)
        assert events[-1].type == "fanout_done"
        assert texts(events) == {agent: answer(agent) for agent in AGENTS}
        summary = events[-1].get("summary")
        assert {agent: summary[agent]["state"] for agent in AGENTS} == dict.fromkeys(AGENTS, "done")
        hub = health(b)["hub"]
        assert isinstance(hub, dict)
        assert hub["takeovers"] == 1
        handed = "handed 1 fan-out(s) over" in a.output()
        assert handed is (how == signal.SIGTERM), a.output()


async def test_redis_away_refuses_new_fanouts_then_recovers(
    redis_server: RedisProcess, tmp_path: Path
) -> None:
    a = start_replica("A", redis_server, tmp_path)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            fanout_id = await start(client, a, "alpha")
            url = f"{a.url}/v1/fanouts/{fanout_id}/events"
            events: list[Event] = []
            async with aconnect_sse(client, "GET", url, headers=SSE) as source:
                async for sse in source.aiter_sse():
                    events.append(Event.from_json(sse.data))
                    if len(events) == 5:
                        redis_server.stop()
                        await wait_until(lambda: health(a)["status"] == "degraded", "A to notice")
                        refused = await client.post(a.url + "/v1/fanouts", json=body("beta"))
                        assert refused.status_code == 503
                        error = refused.json()["error"]
                        assert error["code"] == "hub_unavailable"
                        assert "Redis" in error["message"]
                        assert refused.headers["Retry-After"]
            # The running fan-out streamed on to its reader on A, from memory.
            assert events[-1].type == "fanout_done"
            assert texts(events) == {"alpha": answer("alpha")}
            redis_server.start()
            await wait_until(lambda: health(a)["status"] == "ok", "A to reconnect")
            again = await start(client, a, "beta")
            assert texts(await read(client, a, again)) == {"beta": answer("beta")}
    finally:
        a.stop()


async def test_the_busy_rule_holds_across_replicas(
    replicas: tuple[SpawnedServer, SpawnedServer],
) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        first = await start(client, a, "busy")
        refused = await client.post(b.url + "/v1/fanouts", json=body("busy"))
        assert refused.status_code == 409
        error = refused.json()["error"]
        assert error["code"] == "conversation_busy"
        assert "agent-busy/conversation-1" in error["message"]
        await client.post(f"{b.url}/v1/fanouts/{first}/cancel", json={})
        await read(client, b, first)  # to its end: the lock is given back after it
        await wait_until(
            lambda: _locks_free(a, b), "the conversation lock to be released", timeout_s=10
        )


def _locks_free(a: SpawnedServer, b: SpawnedServer) -> bool:
    response = httpx.post(b.url + "/v1/fanouts", json=body("busy"), timeout=10)
    if response.status_code == 409:
        return False
    assert response.status_code == 201, response.text
    return True


async def test_an_agent_that_cannot_be_revived_ends_replica_lost(
    replicas: tuple[SpawnedServer, SpawnedServer],
) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=60) as client:
        fanout_id = await start(client, a, "alpha", "busy")  # busy is not resumable
        events = await read_killing(client, b, a, fanout_id, lambda seen: len(seen) == 30)
    assert_contiguous(events)
    ends = {e.agent_id: e for e in events if e.is_terminal}
    assert ends["busy"].type == "agent_error"
    assert ends["busy"].get("code") == "replica_lost"
    assert ends["busy"].get("retryable") is True
    assert texts(events)["alpha"] == answer("alpha")
    # B took its conversation's lock over, and gives it back after the end.
    await wait_until(lambda: _locks_free(a, b), "B to release the lock", timeout_s=10)


async def test_a_taken_over_fanout_keeps_its_completion_policy(
    replicas: tuple[SpawnedServer, SpawnedServer],
) -> None:
    """quorum:2 with one agent done before the kill: after the takeover one more success
    ends it, and the slowest agent is cancelled with reason policy, as without a takeover."""
    a, b = replicas
    async with httpx.AsyncClient(timeout=60) as client:
        created = await client.post(
            a.url + "/v1/fanouts", json=body("quick", "alpha", "long", policy="quorum:2")
        )
        assert created.status_code == 201, created.text
        fanout_id = created.json()["fanout_id"]

        def quick_done(seen: list[Event]) -> bool:
            return seen[-1].type == "agent_done" and seen[-1].agent_id == "quick"

        events = await read_killing(client, b, a, fanout_id, quick_done)
    assert_contiguous(events)
    ends = {e.agent_id: e for e in events if e.is_terminal}
    assert ends["quick"].type == "agent_done"
    assert ends["alpha"].type == "agent_done"
    assert texts(events)["alpha"] == answer("alpha")
    assert ends["long"].type == "agent_cancelled"
    assert ends["long"].get("reason") == "policy"
    assert events[-1].get("counts") == {"done": 2, "error": 0, "cancelled": 1}


async def test_use_chat_resumes_on_another_replica(
    replicas: tuple[SpawnedServer, SpawnedServer],
) -> None:
    """The AI SDK's resume (`GET /v1/ui-message-stream/{chat}/stream`) finds the chat's
    stream on B although A started it: the chat's latest fan-out is kept in Redis."""
    a, b = replicas
    resume = f"{b.url}/v1/ui-message-stream/chat-r/stream"
    body = {
        "id": "chat-r",
        "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "go"}]}],
        "agents": [{"agent_id": "long"}],
        "options": {"on_disconnect": "continue"},
    }
    async with httpx.AsyncClient(timeout=60) as client:
        assert (await client.get(resume)).status_code == 204  # nothing sent yet
        async with client.stream("POST", f"{a.url}/v1/ui-message-stream", json=body) as first:
            assert first.status_code == 200
            fanout_id = first.headers["x-fanout-id"]
            async with client.stream("GET", resume) as again:
                assert again.status_code == 200
                assert again.headers["x-vercel-ai-ui-message-stream"] == "v1"
                deltas: list[str] = []
                async for line in again.aiter_lines():
                    if line.startswith("data:") and '"text-delta"' in line:
                        deltas.append(line)
                        if len(deltas) == 3:
                            break
        assert '"long-0 "' in deltas[0]
        cancel = await client.post(f"{b.url}/v1/fanouts/{fanout_id}/cancel", json={})
        assert cancel.status_code == 202
        await read(client, b, fanout_id)  # to its end

        async def ended() -> bool:
            return (await client.get(resume)).status_code == 204

        await wait_until(ended, "the ended chat to answer 204 on B")


async def test_blind_mode_is_the_same_on_every_replica(
    replicas: tuple[SpawnedServer, SpawnedServer],
) -> None:
    """The drawn order is kept in Redis: a page that watches blind on A and votes through B
    sees the same opaque columns, and its vote reveals the agents it ranked."""
    a, b = replicas
    async with httpx.AsyncClient(timeout=60) as client:
        fanout_id = await start(client, a, "alpha", "beta")
        views = [
            (await client.post(f"{server.url}/v1/fanouts/{fanout_id}/blind")).json()
            for server in (a, b, a)
        ]
        assert views[0]["columns"] == views[1]["columns"] == views[2]["columns"]
        ids = [c["column_id"] for c in views[0]["columns"]]
        blind: list[dict[str, Any]] = []
        url = f"{b.url}/v1/fanouts/{fanout_id}/blind/events"
        async with aconnect_sse(client, "GET", url, headers=SSE) as source:
            async for sse in source.aiter_sse():
                blind.append(json.loads(sse.data))
        assert {e["agent_id"] for e in blind if e["type"] == "content"} == set(ids)
        # (The scripted answers spell their agent's name: only the envelope must not.)
        assert not {e["agent_id"] for e in blind} & {"alpha", "beta"}
        assert {e["label"] for e in blind if e["agent_id"]} == {"Answer A", "Answer B"}
        vote = await client.post(
            f"{b.url}/v1/fanouts/{fanout_id}/votes",
            json={"winner": ids[1], "ranking": [ids[1], ids[0]], "voter": "ann"},
        )
        assert vote.status_code == 201, vote.text
        revealed = vote.json()["revealed"]
        assert {r["agent_id"] for r in revealed.values()} == {"alpha", "beta"}
        assert vote.json()["winner"] == revealed[ids[1]]["column_id"]
