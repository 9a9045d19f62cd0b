"""Smoke test: the local stack's Letta server streams the scripted model's answer."""

from __future__ import annotations

import httpx
import pytest
from letta_client import AsyncLetta

from orchestrator.stack._stack import StackInfo
from orchestrator.testing._modelserver import expected_answer, expected_reasoning
from tests.letta.conftest import SCRIPTED_MODEL, CreateAgent

pytestmark = [pytest.mark.letta, pytest.mark.anyio]


async def _stream_text(client: AsyncLetta, agent_id: str, message: str) -> dict[str, str]:
    stream = await client.agents.messages.create(
        agent_id=agent_id,
        messages=[{"role": "user", "content": message}],
        streaming=True,
        stream_tokens=True,
    )
    parts: dict[str, str] = {"assistant_message": "", "reasoning_message": "", "stop": ""}
    async for event in stream:
        kind = getattr(event, "message_type", None)
        if kind == "assistant_message":
            parts[kind] += str(getattr(event, "content", ""))
        elif kind == "reasoning_message":
            parts[kind] += str(getattr(event, "reasoning", ""))
        elif kind == "stop_reason":
            parts["stop"] = str(getattr(event, "stop_reason", ""))
    return parts


async def test_health_and_model_handles(letta_stack: StackInfo) -> None:
    async with httpx.AsyncClient(base_url=letta_stack.base_url) as http:
        assert (await http.get("/v1/health/")).status_code == 200
        handles = {m["handle"] for m in (await http.get("/v1/models/")).json()}
    assert SCRIPTED_MODEL in handles


async def test_streamed_answer_is_the_expected_answer(
    letta_client: AsyncLetta, scripted_agent: CreateAgent
) -> None:
    persona = "Ada is a careful assistant who answers briefly."
    message = "What should I plant in spring?"
    agent_id = await scripted_agent(persona)
    parts = await _stream_text(letta_client, agent_id, message)
    assert parts["assistant_message"] == expected_answer(persona, message)
    assert parts["stop"] == "end_turn"


async def test_agents_with_different_personas_answer_differently(
    letta_client: AsyncLetta, scripted_agent: CreateAgent
) -> None:
    message = "Describe the sea. [[words=6 reasoning]]"
    first = await scripted_agent("Bob likes boats.")
    second = await scripted_agent("Cleo likes clouds.")
    one = await _stream_text(letta_client, first, message)
    two = await _stream_text(letta_client, second, message)
    assert one["assistant_message"] == expected_answer("Bob likes boats.", message)
    assert two["assistant_message"] == expected_answer("Cleo likes clouds.", message)
    assert one["assistant_message"] != two["assistant_message"]
    assert one["reasoning_message"] == expected_reasoning("Bob likes boats.", message)
