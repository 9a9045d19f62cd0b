"""LettaSource over conversations, with a model override, and a cancel that reaches only its
own run; against the Letta protocol simulator (the real server: test_sessions_letta.py)."""

from __future__ import annotations

import anyio
import pytest
from letta_client import AsyncLetta

from orchestrator import Event, LettaSource, collect, open_fanout
from orchestrator.testing._modelserver import expected_history_answer
from orchestrator.testing._simulator import SimAgent, Simulator
from tests._wait import wait_until
from tests.testing._sim_fixtures import SimServer, sim_client, sim_server, simulator

__all__ = ["sim_client", "sim_server", "simulator"]

pytestmark = pytest.mark.anyio

HISTORY = "What did you see? [[history]]"


def _first(sim: Simulator) -> SimAgent:
    return next(iter(sim.agents.values()))


async def _answer(source: LettaSource, message: str = HISTORY) -> str:
    result = await collect([source], message)
    agent = result[source.agent_id]
    assert agent.state == "done", agent.error
    return agent.text


async def test_a_conversation_keeps_its_own_history(
    sim_client: AsyncLetta, simulator: Simulator
) -> None:
    agent = _first(simulator)
    one = (await sim_client.conversations.create(agent_id=agent.id)).id
    two = (await sim_client.conversations.create(agent_id=agent.id)).id
    in_one = LettaSource(sim_client, agent.id, conversation_id=one)
    in_two = LettaSource(sim_client, agent.id, conversation_id=two)
    default = LettaSource(sim_client, agent.id)
    assert await _answer(in_one) == expected_history_answer(agent.persona, 1, "scripted")
    assert await _answer(in_one) == expected_history_answer(agent.persona, 2, "scripted")
    assert await _answer(in_two) == expected_history_answer(agent.persona, 1, "scripted")
    assert await _answer(default) == expected_history_answer(agent.persona, 1, "scripted")
    assert [run.conversation_id for run in simulator.runs.values()] == [one, one, two, None]


async def test_model_is_sent_as_override_model(
    sim_client: AsyncLetta, simulator: Simulator
) -> None:
    agent = _first(simulator)
    conversation = (await sim_client.conversations.create(agent_id=agent.id)).id
    source = LettaSource(
        sim_client, agent.id, conversation_id=conversation, model="openai-proxy/other"
    )
    assert await _answer(source) == expected_history_answer(agent.persona, 1, "other")
    default = LettaSource(sim_client, agent.id, model="openai-proxy/third")
    assert await _answer(default) == expected_history_answer(agent.persona, 1, "third")


async def test_column_id_conversation_key_and_info(sim_client: AsyncLetta) -> None:
    agent = "agent-00000000-0000-4000-8000-000000000001"
    plain = LettaSource(sim_client, agent)
    assert (plain.agent_id, plain.letta_agent_id, plain.label) == (agent, agent, agent)
    assert plain.conversation_key == f"{agent}/default"
    assert dict(plain.info) == {"letta_agent_id": agent, "conversation_id": None, "model": None}
    column = LettaSource(
        sim_client, agent, conversation_id="conv-1", model="p/m", column_id="col", label="L"
    )
    assert (column.agent_id, column.letta_agent_id, column.label) == ("col", agent, "L")
    assert column.conversation_key == f"{agent}/conv-1"
    assert dict(column.info) == {
        "letta_agent_id": agent,
        "conversation_id": "conv-1",
        "model": "p/m",
    }


@pytest.mark.parametrize(
    ("mine_in_default", "other_in_default"), [(False, False), (False, True), (True, False)]
)
async def test_cancel_before_the_run_id_is_known_reaches_only_its_own_run(
    sim_server: SimServer, mine_in_default: bool, other_in_default: bool
) -> None:
    sim = sim_server.sim
    agent = _first(sim)
    async with AsyncLetta(base_url=sim_server.base_url, max_retries=0) as client:
        new = client.conversations.create
        mine = None if mine_in_default else (await new(agent_id=agent.id)).id
        other = None if other_in_default else (await new(agent_id=agent.id)).id
        # Our request's run exists on the server, but its response (and so its run id) never
        # comes: only a lookup of this conversation's runs can find it.
        sim.accept_delays[mine or agent.id] = 3600.0
        bystander = LettaSource(client, agent.id, conversation_id=other, column_id="other")
        early = LettaSource(client, agent.id, conversation_id=mine, column_id="mine")
        slow = "Long answer [[words=60 tps=60]]"
        events: list[Event] = []
        async with open_fanout([bystander], slow) as running:
            first = await anext(running)
            assert first.type == "fanout_start"
            started = anyio.Event()

            async def read() -> None:
                async for event in running:
                    events.append(event)
                    if event.type == "agent_start":
                        started.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await started.wait()
                async with open_fanout([early], slow) as cancelled:
                    await wait_until(
                        lambda: any(r.conversation_id == mine for r in sim.runs.values()),
                        "the early run to exist on the server",
                    )
                    cancelled.cancel("mine")
                    async for _ in cancelled:
                        pass
                mine_run = next(r for r in sim.runs.values() if r.conversation_id == mine)
                assert early.run_ids == []  # the stream never announced it
                assert early.cancelled_runs == [mine_run.id]
                assert sim.run_status(mine_run.id) == "cancelled"
                other_run = next(r for r in sim.runs.values() if r.conversation_id == other)
                assert sim.run_status(other_run.id) != "cancelled"
        result = running.result()
    assert result["other"].state == "done"
    assert sim.run_status(other_run.id) == "completed"
