"""How background mode is turned on, and what a background source sends (over the simulator)."""

from __future__ import annotations

import json

import pytest
from letta_client import AsyncLetta

from orchestrator import (
    AgentRef,
    Checkpoint,
    ConfigError,
    LettaConnection,
    LettaDirectory,
    LettaSource,
    Revivable,
)
from orchestrator.testing._modelserver import expected_answer
from orchestrator.testing._simulator import Simulator
from tests.testing._sim_fixtures import SimServer, sim_client, sim_server, simulator

__all__ = ["sim_client", "sim_server", "simulator"]

pytestmark = pytest.mark.anyio


async def test_the_connection_setting_reaches_every_source(sim_server: SimServer) -> None:
    connection = LettaConnection(base_url=sim_server.base_url, background=True)
    async with LettaDirectory(connection=connection) as directory:
        [source] = await directory.sources([AgentRef(agent_id=next(iter(sim_server.sim.agents)))])
    assert isinstance(source, LettaSource)
    assert source.background is True
    async with LettaDirectory(base_url=sim_server.base_url) as directory:
        [source] = await directory.sources([AgentRef(name="sim-1")])
    assert isinstance(source, LettaSource)
    assert source.background is False


async def test_a_background_source_uses_the_agent_direct_conversation_and_numbers_events(
    sim_client: AsyncLetta, simulator: Simulator
) -> None:
    agent = next(iter(simulator.agents.values()))
    message = "Hello [[words=8]]"
    source = LettaSource(sim_client, agent.id, background=True)
    events = [sev async for sev in source.stream(message)]

    text = "".join(str(sev.data["delta"]) for sev in events if sev.type == "content")
    assert text == expected_answer(agent.persona, message)
    assert [sev.data["cursor"] for sev in events] == list(range(1, len(events) + 1))
    assert source.otid is not None
    # The message went to the agent's default conversation (agent-direct mode).
    run = simulator.runs[str(source.run_id)]
    assert (run.agent_id, run.conversation_id) == (agent.id, None)


async def test_resume_spec_is_json_and_rebuilds_the_same_source(sim_client: AsyncLetta) -> None:
    source = LettaSource(
        sim_client,
        "agent-1",
        conversation_id="conv-1",
        model="openai-proxy/scripted-slow",
        column_id="col",
        label="Col",
        background=True,
        stream_tokens=False,
    )
    assert isinstance(source, Revivable)
    spec = json.loads(json.dumps(source.resume_spec()))
    revived = LettaSource.revived(sim_client, Checkpoint("col", "Col", spec, run_id="run-1"))
    assert revived.resume_spec() == spec
    assert (revived.agent_id, revived.label, revived.letta_agent_id) == ("col", "Col", "agent-1")
    assert revived.run_id == "run-1"
    with pytest.raises(ConfigError, match="resume spec"):
        LettaSource.revived(sim_client, Checkpoint("col", "Col", {"kind": "other"}))
