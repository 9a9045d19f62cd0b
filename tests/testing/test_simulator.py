"""The Letta protocol simulator over real HTTP, read with the real ``letta_client`` SDK."""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import letta_client
import pytest
from letta_client import AsyncLetta

from orchestrator import Event, open_fanout
from orchestrator.letta._source import LettaSource
from orchestrator.testing._modelserver import expected_answer, expected_reasoning
from orchestrator.testing._simulator import Simulator, create_agents
from tests._wait import wait_until

from ._sim_fixtures import SimServer, run_simulator, sim_client, sim_server, simulator

__all__ = ["sim_client", "sim_server", "simulator"]  # fixtures used by the tests below

pytestmark = pytest.mark.anyio

_DEADLINE_S = 10.0


async def _open(client: AsyncLetta, agent_id: str, message: str) -> Any:
    return await client.agents.messages.create(
        agent_id=agent_id,
        messages=[{"role": "user", "content": message}],
        streaming=True,
        stream_tokens=True,
    )


async def _items(client: AsyncLetta, agent_id: str, message: str) -> list[Any]:
    return [item async for item in await _open(client, agent_id, message)]


async def _drain(stream: Any, into: list[Any]) -> None:
    async for item in stream:
        into.append(item)


def _types(items: list[Any]) -> list[str]:
    out: list[str] = []
    for item in items:
        kind = str(item.message_type)
        if not out or out[-1] != kind:
            out.append(kind)
    return out


def test_agent_ids_are_stable_and_shaped_like_letta_ids() -> None:
    first, second = create_agents(3), create_agents(3)
    assert [a.id for a in first] == [a.id for a in second]
    assert len({a.id for a in first}) == 3
    for agent in first:
        assert agent.id.startswith("agent-")
        assert agent.id[6:][14] == "4"  # uuid4 shape, or letta's path validator says 422


async def test_plain_answer_streams_token_deltas_of_one_message(
    sim_client: AsyncLetta, simulator: Simulator
) -> None:
    agent = next(iter(simulator.agents.values()))
    message = "Tell me about rivers [[words=7]]"
    items = await _items(sim_client, agent.id, message)

    assert _types(items) == ["ping", "assistant_message", "stop_reason", "usage_statistics"]
    assert items[0].run_id is not None
    deltas = [i for i in items if i.message_type == "assistant_message"]
    assert len(deltas) == 8  # the persona name and seven words, one token each
    assert "".join(d.content for d in deltas) == expected_answer(agent.persona, message)
    assert len({(d.id, d.otid, d.step_id, d.run_id) for d in deltas}) == 1
    assert deltas[0].run_id == items[0].run_id
    assert items[-2].stop_reason == "end_turn"
    assert items[-1].step_count == 1
    assert items[-1].completion_tokens == 8
    run = await sim_client.runs.retrieve(items[0].run_id)
    assert (run.status, run.stop_reason) == ("completed", "end_turn")


async def test_reasoning_and_tool_call_take_two_steps(
    sim_client: AsyncLetta, simulator: Simulator
) -> None:
    agent = next(iter(simulator.agents.values()))
    message = "Look it up [[words=3 reasoning tool=conversation_search]]"
    items = await _items(sim_client, agent.id, message)

    assert _types(items) == [
        "ping",
        "reasoning_message",
        "tool_call_message",
        "tool_return_message",
        "reasoning_message",
        "assistant_message",
        "stop_reason",
        "usage_statistics",
    ]
    call = next(i for i in items if i.message_type == "tool_call_message")
    back = next(i for i in items if i.message_type == "tool_return_message")
    assert call.tool_call.name == "conversation_search"
    assert back.tool_call_id == call.tool_call.tool_call_id
    assert back.status == "success"
    thinking = [i for i in items if i.message_type == "reasoning_message"]
    half = len(thinking) // 2
    assert "".join(t.reasoning for t in thinking[:half]) == expected_reasoning(
        agent.persona, message
    )
    # Reasoning and answer of one step share the message id but not the otid.
    answer = [i for i in items if i.message_type == "assistant_message"]
    assert answer[0].id == thinking[-1].id
    assert answer[0].otid != thinking[-1].otid
    assert call.step_id != answer[0].step_id
    assert items[-1].step_count == 2


async def test_directives_given_to_an_agent_apply_to_every_message() -> None:
    agents = create_agents(2)
    slow = agents[0].__class__(agents[0].id, "slow", agents[0].persona, "words=2 reasoning")
    with run_simulator(Simulator([slow, agents[1]])) as server:
        async with AsyncLetta(base_url=server.base_url, max_retries=0) as client:
            items = await _items(client, slow.id, "Hi")
            plain = await _items(client, agents[1].id, "Hi")
    assert "reasoning_message" in _types(items)
    assert "reasoning_message" not in _types(plain)
    assert sum(i.message_type == "assistant_message" for i in items) == 3


async def test_tokens_are_paced_at_the_requested_rate(
    sim_client: AsyncLetta, simulator: Simulator
) -> None:
    agent = next(iter(simulator.agents.values()))
    started = time.monotonic()
    items = await _items(sim_client, agent.id, "Pace yourself [[words=9 tps=50]]")
    elapsed = time.monotonic() - started
    # Ten tokens at 50/s cannot arrive sooner than 0.2 s (a lower bound only: no flakiness).
    assert sum(i.message_type == "assistant_message" for i in items) == 10
    assert elapsed >= 0.2


async def test_cancel_ends_the_stream_with_stop_reason_cancelled(
    sim_client: AsyncLetta, simulator: Simulator
) -> None:
    agent = next(iter(simulator.agents.values()))
    stream = await _open(sim_client, agent.id, "Go on and on [[words=200 tps=100]]")
    seen: list[Any] = []
    run_id = ""
    async for item in stream:
        seen.append(item)
        if item.message_type == "ping":
            run_id = item.run_id
        if sum(i.message_type == "assistant_message" for i in seen) == 3:
            result = await sim_client.agents.messages.cancel(agent_id=agent.id, run_ids=[run_id])
            assert result == {run_id: "cancelled"}
    assert seen[-1].message_type == "stop_reason"
    assert seen[-1].stop_reason == "cancelled"
    assert sum(i.message_type == "assistant_message" for i in seen) < 201
    assert simulator.run_status(run_id) == "cancelled"
    assert simulator.cancel_calls == 1


async def test_cancel_without_active_runs_is_a_conflict(
    sim_client: AsyncLetta, simulator: Simulator
) -> None:
    agent = next(iter(simulator.agents.values()))
    with pytest.raises(letta_client.ConflictError):
        await sim_client.agents.messages.cancel(agent_id=agent.id)


async def test_unknown_and_malformed_agents_are_refused(sim_client: AsyncLetta) -> None:
    unknown = "agent-00000000-0000-4000-8000-000000000000"
    with pytest.raises(letta_client.NotFoundError, match="not found"):
        await _open(sim_client, unknown, "hello")
    with pytest.raises(letta_client.NotFoundError):
        await sim_client.agents.retrieve(unknown)
    with pytest.raises(letta_client.UnprocessableEntityError, match="agent-"):
        await _open(sim_client, "not-an-agent", "hello")


async def test_model_error_before_the_answer_ends_with_an_error_event(
    sim_client: AsyncLetta, simulator: Simulator
) -> None:
    agent = next(iter(simulator.agents.values()))
    seen: list[Any] = []
    stream = await _open(sim_client, agent.id, "Break [[fail=429@0]]")
    with pytest.raises(letta_client.APIStatusError) as caught:
        await _drain(stream, seen)
    assert _types(seen) == ["ping", "stop_reason"]
    assert seen[-1].stop_reason == "llm_api_error"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error_type"] == "llm_rate_limit"
    assert simulator.run_status(seen[0].run_id) == "failed"


async def test_model_error_mid_answer_reports_an_internal_error(
    sim_client: AsyncLetta, simulator: Simulator
) -> None:
    agent = next(iter(simulator.agents.values()))
    seen: list[Any] = []
    stream = await _open(sim_client, agent.id, "Break [[words=8 fail=500@3]]")
    with pytest.raises(letta_client.APIStatusError) as caught:
        await _drain(stream, seen)
    assert _types(seen) == ["ping", "assistant_message", "stop_reason"]
    assert sum(i.message_type == "assistant_message" for i in seen) == 3
    assert [i.stop_reason for i in seen if i.message_type == "stop_reason"] == [
        "error",
        "llm_api_error",
    ]
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error_type"] == "internal_error"


async def test_stall_keeps_the_stream_open_and_the_run_running(sim_server: SimServer) -> None:
    sim = sim_server.sim
    agent = next(iter(sim.agents.values()))
    seen: list[Any] = []
    async with AsyncLetta(base_url=sim_server.base_url, max_retries=0) as client:
        stream = await _open(client, agent.id, "Stop halfway [[words=10 stall@4]]")
        with anyio.move_on_after(0.5):
            async for item in stream:
                seen.append(item)
        await stream.close()
        await wait_until(lambda: sim.streams_closed == 1, "the server to see the disconnect")
        run = await client.runs.retrieve(seen[0].run_id)
    assert sum(i.message_type == "assistant_message" for i in seen) == 4
    # Like Letta: the run goes on without its client until someone cancels it.
    assert run.status == "running"
    assert sim.runs[seen[0].run_id].client_disconnected


async def test_a_disconnected_run_completes_when_its_answer_would_have(
    sim_server: SimServer,
) -> None:
    sim = sim_server.sim
    agent = next(iter(sim.agents.values()))
    async with AsyncLetta(base_url=sim_server.base_url, max_retries=0) as client:
        stream = await _open(client, agent.id, "Short [[words=3 tps=20]]")
        first = await stream.__anext__()
        await stream.close()
        await wait_until(lambda: sim.streams_closed == 1, "the server to see the disconnect")
        await wait_until(lambda: sim.run_status(first.run_id) == "completed", "the run to end")


async def test_stall_sends_keepalive_pings() -> None:
    sim = Simulator(1, keepalive_s=0.05)
    agent = next(iter(sim.agents.values()))
    with run_simulator(sim) as server:
        async with AsyncLetta(base_url=server.base_url, max_retries=0) as client:
            stream = await _open(client, agent.id, "Wait [[stall@0]]")
            pings = 0
            async for item in stream:
                pings += item.message_type == "ping"
                if pings == 3:
                    break
            await stream.close()
    assert pings == 3


async def test_list_agents_paginates_like_letta() -> None:
    with run_simulator(Simulator(7)) as server:
        async with AsyncLetta(base_url=server.base_url, max_retries=0) as client:
            names = [a.name async for a in client.agents.list(limit=3)]
            found = await client.agents.list(name="sim-4")
    assert sorted(names) == [f"sim-{k}" for k in range(7)]
    assert [a.name for a in found.items] == ["sim-4"]


async def test_health_and_stats_endpoints(sim_server: SimServer) -> None:
    async with httpx.AsyncClient(base_url=sim_server.base_url) as http:
        health = (await http.get("/v1/health/")).json()
        stats = (await http.get("/_sim/stats")).json()
    assert health == {"version": "0.16.8", "status": "ok"}
    assert stats["agents"] == 4
    assert stats["active_streams"] == 0


async def test_non_streaming_request_returns_whole_messages(
    sim_client: AsyncLetta, simulator: Simulator
) -> None:
    agent = next(iter(simulator.agents.values()))
    message = "All at once [[words=4]]"
    response = await sim_client.agents.messages.create(
        agent_id=agent.id, messages=[{"role": "user", "content": message}]
    )
    texts = [m.content for m in response.messages if m.message_type == "assistant_message"]
    assert texts == [expected_answer(agent.persona, message)]
    assert response.stop_reason.stop_reason == "end_turn"


async def test_unknown_directive_is_a_bad_request(
    sim_client: AsyncLetta, simulator: Simulator
) -> None:
    agent = next(iter(simulator.agents.values()))
    with pytest.raises(letta_client.BadRequestError, match="directive"):
        await _open(sim_client, agent.id, "Typo [[wrods=3]]")


async def test_letta_source_fanout_over_the_simulator(sim_server: SimServer) -> None:
    sim = sim_server.sim
    agents = list(sim.agents.values())
    message = "Compare notes [[words=5 tps=200]]"
    slow = "Compare notes [[words=400 tps=100]]"
    async with AsyncLetta(base_url=sim_server.base_url, max_retries=0) as client:
        sources = [LettaSource(client, a.id, label=a.name) for a in agents]
        events: list[Event] = []
        async with open_fanout(sources[:3], message) as fanout:
            async for event in fanout:
                events.append(event)
        texts = {
            a.id: "".join(e.delta for e in events if e.agent_id == a.id and e.type == "content")
            for a in agents[:3]
        }
        assert texts == {a.id: expected_answer(a.persona, message) for a in agents[:3]}
        assert sum(e.type == "agent_done" for e in events) == 3

        last = sources[3]
        async with open_fanout([last], slow) as fanout:
            async for event in fanout:
                if event.type == "content":
                    fanout.cancel(last.agent_id)
        result = fanout.result()
    assert result[last.agent_id].state == "cancelled"
    # Cancelling through the orchestrator cancelled the run on the (simulated) server.
    assert last.run_ids
    assert sim.run_status(last.run_ids[0]) == "cancelled"
    assert sim.cancel_calls == 1
    await wait_until(lambda: sim.active_streams == 0, "every stream to close")
