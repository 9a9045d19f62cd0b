"""Contract: the simulator and the real Letta server stream the same shapes.

Each scenario runs against the real server of the local stack (scripted model behind it)
and against the simulator, and is recorded at three levels:

- ``wire``: the raw SSE frames (event name, ``message_type`` and the set of fields, or
  ``[DONE]``), read with httpx-sse;
- ``sdk``: what ``letta_client`` yields (type and fields) and how the iteration ends;
- ``events``: what the orchestrator makes of it through ``LettaSource`` (event types, payload
  fields, and the terminal event's code / reason / stop reason).

Runs of identical entries are collapsed (token counts and timing may differ); everything
else must be equal. When the two disagree, the simulator is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import letta_client
import pytest
from httpx_sse import aconnect_sse
from letta_client import AsyncLetta

from orchestrator import open_fanout
from orchestrator.letta._source import LettaSource
from orchestrator.stack._stack import StackInfo
from orchestrator.testing._simulator import SimAgent, Simulator
from tests.testing._sim_fixtures import SimServer, run_simulator

from .conftest import CreateAgent

pytestmark = [pytest.mark.letta, pytest.mark.anyio]

PERSONA = "Contract is a careful agent that answers briefly."
UNKNOWN_AGENT = "agent-00000000-0000-4000-8000-000000000000"
_HEADERS = {"User-Agent": "letta-client/1.12.1"}


@dataclass(frozen=True)
class Scenario:
    """One prompt, and whether to cancel after ``cancel_after`` answer tokens."""

    message: str
    cancel_after: int | None = None
    unknown_agent: bool = False


SCENARIOS = {
    "plain": Scenario("Name three trees [[words=6]]"),
    "reasoning": Scenario("Think, then answer [[words=4 reasoning]]"),
    "tool_call": Scenario("Search first [[words=4 tool=conversation_search]]"),
    "cancel": Scenario("A long story [[words=80 tps=10]]", cancel_after=3),
    "unknown_agent": Scenario("Anyone there?", unknown_agent=True),
    "model_error": Scenario("Fail at once [[fail=500@0]]"),
    "model_rate_limit": Scenario("Too fast [[fail=429@0]]"),
    "model_error_mid_answer": Scenario("Fail later [[words=8 fail=500@3]]"),
}

Shape = list[Any]


def _collapse(entries: Iterator[Any]) -> Shape:
    out: Shape = []
    for entry in entries:
        if not out or out[-1] != entry:
            out.append(entry)
    return out


async def _record_wire(base_url: str, agent_id: str, scenario: Scenario) -> Shape:
    body = {
        "messages": [{"role": "user", "content": scenario.message}],
        "streaming": True,
        "stream_tokens": True,
    }
    entries: list[Any] = []
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=60, headers=_HEADERS) as http,
        aconnect_sse(http, "POST", f"/v1/agents/{agent_id}/messages", json=body) as source,
    ):
        response = source.response
        if response.status_code != 200:
            await response.aread()
            return [("status", response.status_code, sorted(response.json()))]
        run_id = None
        tokens = 0
        async for sse in source.aiter_sse():
            if sse.data == "[DONE]":
                entries.append((sse.event, "[DONE]"))
                continue
            data = json.loads(sse.data)
            entries.append((sse.event, data.get("message_type"), tuple(sorted(data))))
            run_id = run_id or data.get("run_id")
            tokens += data.get("message_type") == "assistant_message"
            if scenario.cancel_after is not None and tokens == scenario.cancel_after:
                assert run_id is not None
                cancel = await http.post(
                    f"/v1/agents/{agent_id}/messages/cancel", json={"run_ids": [run_id]}
                )
                entries.append(("cancel", cancel.status_code, cancel.json()[run_id]))
        if run_id is not None:
            run = (await http.get(f"/v1/runs/{run_id}")).json()
            entries.append(("run", run["status"], run["stop_reason"], tuple(sorted(run))))
    return _collapse(iter(entries))


async def _record_sdk(client: AsyncLetta, agent_id: str, scenario: Scenario) -> Shape:
    entries: list[Any] = []
    tokens = 0
    try:
        stream = await client.agents.messages.create(
            agent_id=agent_id,
            messages=[{"role": "user", "content": scenario.message}],
            streaming=True,
            stream_tokens=True,
        )
        run_id: str | None = None
        async for item in stream:
            data: dict[str, Any] = item.to_dict()
            entries.append((data.get("message_type"), tuple(sorted(data))))
            run_id = run_id or data.get("run_id")
            tokens += data.get("message_type") == "assistant_message"
            if scenario.cancel_after is not None and tokens == scenario.cancel_after:
                assert run_id is not None
                await client.agents.messages.cancel(agent_id=agent_id, run_ids=[run_id])
        entries.append(("ended",))
    except letta_client.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        entries.append(("raised", type(exc).__name__, exc.status_code, body.get("error_type")))
    return _collapse(iter(entries))


async def _record_events(client: AsyncLetta, agent_id: str, scenario: Scenario) -> Shape:
    source = LettaSource(client, agent_id, label="contract", connect_retries=0)
    entries: list[Any] = []
    tokens = 0
    async with open_fanout([source], scenario.message) as fanout:
        async for event in fanout:
            if event.agent_id is None:
                continue
            if event.is_terminal:
                data = dict(event.data)
                detail = data.get("code") or data.get("reason") or data.get("stop_reason")
                entries.append((event.type, tuple(sorted(data)), detail))
                continue
            entries.append((event.type, tuple(sorted(event.data))))
            tokens += event.type == "content"
            if scenario.cancel_after is not None and tokens == scenario.cancel_after:
                fanout.cancel(agent_id)
    result = fanout.result()[agent_id]
    entries.append(("result", result.state, result.stop_reason))
    if scenario.cancel_after is not None:
        assert source.run_ids
        run = await client.runs.retrieve(source.run_ids[0])
        entries.append(("server_run", run.status))
    return _collapse(iter(entries))


def _variant(scenario: Scenario, tag: str) -> Scenario:
    # A distinct prompt per recording: the scripted model derives its tool call id from the
    # prompt, and Letta loops on a tool call id it has seen before in the agent's history.
    return replace(scenario, message=f"{tag}: {scenario.message}")


async def _record_all(base_url: str, agent_id: str, scenario: Scenario) -> dict[str, Shape]:
    async with AsyncLetta(base_url=base_url, max_retries=0, timeout=60) as client:
        return {
            "wire": await _record_wire(base_url, agent_id, _variant(scenario, "wire")),
            "sdk": await _record_sdk(client, agent_id, _variant(scenario, "sdk")),
            "events": await _record_events(client, agent_id, _variant(scenario, "events")),
        }


@pytest.fixture(scope="module")
def contract_sim() -> Iterator[SimServer]:
    """The simulator with one agent of the same persona as the real one."""
    agent = SimAgent("agent-6c0f8a52-3e1b-4c7d-9a2e-5b8d1f0c3a71", "contract", PERSONA)
    with run_simulator(Simulator([agent])) as server:
        yield server


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_simulator_matches_the_real_server(
    name: str,
    letta_stack: StackInfo,
    scripted_agent: CreateAgent,
    contract_sim: SimServer,
) -> None:
    scenario = SCENARIOS[name]
    real_agent = UNKNOWN_AGENT if scenario.unknown_agent else await scripted_agent(PERSONA)
    sim_agent = UNKNOWN_AGENT if scenario.unknown_agent else next(iter(contract_sim.sim.agents))

    real = await _record_all(letta_stack.base_url, real_agent, scenario)
    sim = await _record_all(contract_sim.base_url, sim_agent, scenario)

    for level in ("wire", "sdk", "events"):
        assert sim[level] == real[level], f"{name}: the simulator differs at the {level} level"
    # The recordings are not trivially equal: each scenario has a distinct terminal shape.
    assert real["sdk"][-1][0] in ("ended", "raised")
