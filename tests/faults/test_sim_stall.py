"""Fault: the (simulated) Letta server stops sending mid-answer.

The deadlines end the stalled agents (first-token and total timeout), their runs are
cancelled on the server, and the agents that keep streaming are unaffected.
"""

from __future__ import annotations

import time

import anyio
import pytest
from letta_client import AsyncLetta

from orchestrator import Event, LettaSource, open_fanout
from orchestrator.testing._modelserver import expected_answer
from orchestrator.testing._simulator import SimAgent, Simulator, create_agents
from tests.testing._sim_fixtures import run_simulator

pytestmark = pytest.mark.anyio

PROMPT = "Status report"


def _agents() -> list[SimAgent]:
    base = create_agents(4)
    behaviour = ["stall@0", "words=10 tps=20 stall@3", "words=10 tps=20", "words=6 tps=50"]
    return [SimAgent(a.id, a.name, a.persona, d) for a, d in zip(base, behaviour, strict=True)]


async def test_stalled_agents_time_out_and_the_others_finish() -> None:
    agents = _agents()
    sim = Simulator(agents)
    with run_simulator(sim) as server:
        async with AsyncLetta(base_url=server.base_url, max_retries=0) as client:
            sources = [LettaSource(client, a.id, label=a.name) for a in agents]
            events: list[Event] = []
            async with open_fanout(
                sources, PROMPT, first_token_timeout_s=1.0, timeout_s=3.0
            ) as fanout:
                async for event in fanout:
                    events.append(event)
            result = fanout.result()
        deadline = time.monotonic() + 10
        while sim.active_streams:  # the server sees every stream closed
            assert time.monotonic() < deadline, "streams left open on the server"
            await anyio.sleep(0.01)

    never, halfway, steady, quick = (result[a.id] for a in agents)
    assert (never.state, never.cancel_reason) == ("cancelled", "timeout")
    assert (halfway.state, halfway.cancel_reason) == ("cancelled", "timeout")
    assert (
        halfway.text
        == expected_answer(agents[1].persona, f"[[words=10]] {PROMPT}")[: len(halfway.text)]
    )
    assert len(halfway.text.split()) == 3
    for agent, outcome in ((agents[2], steady), (agents[3], quick)):
        assert outcome.state == "done"
        words = agent.directives.split()[0]
        assert outcome.text == expected_answer(agent.persona, f"[[{words}]] {PROMPT}")
    # The deadline cancelled the stalled runs on the server, not only the HTTP streams.
    for source in sources[:2]:
        assert source.run_ids
        assert sim.run_status(source.run_ids[0]) == "cancelled"
    assert sum(e.type == "fanout_done" for e in events) == 1
