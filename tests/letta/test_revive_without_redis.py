"""Reviving a source whose run cannot be continued ends with ``replica_lost`` and cancels it.

The Letta simulator answers ``POST /v1/runs/{id}/stream`` as a Letta server without Redis
does (503), so the run of a checkpoint cannot be replayed there; a second real Letta server
without Redis would be the same test at many times the cost.
"""

from __future__ import annotations

import pytest
from letta_client import AsyncLetta

from orchestrator import Checkpoint, LettaDirectory, LettaSource, SourceEvent
from orchestrator.testing._simulator import Simulator
from tests.testing._sim_fixtures import SimServer, sim_client, sim_server, simulator

__all__ = ["sim_client", "sim_server", "simulator"]

pytestmark = pytest.mark.anyio

SLOW = "Tell me about tides [[tps=20 words=200]]"


async def _start_and_abandon(client: AsyncLetta, agent_id: str) -> tuple[LettaSource, str]:
    # A replica streams the first events, then dies without cancelling the run.
    source = LettaSource(client, agent_id, column_id="c1", label="tides")
    stream = source.stream(SLOW)
    first: SourceEvent = await anext(stream)
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert first.type == "agent_start"
    return source, str(first.data["run_id"])


async def test_a_server_without_redis_cannot_continue_the_run_so_it_is_cancelled(
    sim_server: SimServer, sim_client: AsyncLetta, simulator: Simulator
) -> None:
    agent_id = next(iter(simulator.agents))
    source, run_id = await _start_and_abandon(sim_client, agent_id)
    assert simulator.runs[run_id].status == "running"
    spec = {**source.resume_spec(), "background": True}
    checkpoint = Checkpoint("c1", "tides", spec, run_id=run_id, cursor=2, started=True)

    async with LettaDirectory(sim_client) as directory:
        revived = await directory.revive(checkpoint)
        events = [sev async for sev in revived.stream(SLOW)]

    [error] = events
    assert error.type == "agent_error"
    assert error.data["code"] == "replica_lost"
    assert error.data["retryable"] is True
    assert "503" in str(error.data["message"])
    assert simulator.runs[run_id].status == "cancelled"
    assert simulator.cancel_calls == 1


async def test_a_checkpoint_of_a_foreground_source_is_lost_and_cancelled(
    sim_server: SimServer, sim_client: AsyncLetta, simulator: Simulator
) -> None:
    agent_id = next(iter(simulator.agents))
    source, run_id = await _start_and_abandon(sim_client, agent_id)
    checkpoint = Checkpoint("c1", "tides", source.resume_spec(), run_id=run_id, started=True)
    revived = LettaSource.revived(sim_client, checkpoint)
    events = [sev async for sev in revived.stream(SLOW)]

    assert [sev.data["code"] for sev in events] == ["replica_lost"]
    assert "not a background run" in str(events[0].data["message"])
    assert simulator.runs[run_id].status == "cancelled"
    assert revived.cancelled_runs == [run_id]


async def test_a_spec_of_another_kind_gives_a_failed_source(sim_client: AsyncLetta) -> None:
    checkpoint = Checkpoint("c1", "x", {"kind": "scripted"}, run_id=None)
    async with LettaDirectory(sim_client) as directory:
        revived = await directory.revive(checkpoint)
        events = [sev async for sev in revived.stream("hi")]
    assert [sev.data["code"] for sev in events] == ["replica_lost"]
