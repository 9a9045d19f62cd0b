"""The scripted model's ``history`` directive and ``scripted-history`` model: it answers with
what it was sent, so that isolation tests can fail; and the per-request records."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from orchestrator.testing._modelserver import (
    HISTORY_MODEL,
    create_app,
    expected_answer,
    expected_history_answer,
)

pytestmark = pytest.mark.anyio

PERSONA = "Ada is a careful assistant."
SYSTEM = f"<memory_blocks>\n<persona>\n<value>\n{PERSONA}\n</value>\n</persona>\n</memory_blocks>"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://model") as http:
        yield http


def _conversation(*users: str) -> list[dict[str, str]]:
    # A conversation as Letta sends it: system, then user / assistant turns, the last a user.
    messages = [{"role": "system", "content": SYSTEM}]
    for n, text in enumerate(users):
        if n:
            messages.append({"role": "assistant", "content": f"answer {n}"})
        messages.append({"role": "user", "content": text})
    return messages


async def _answer(client: httpx.AsyncClient, model: str, messages: list[Any]) -> str:
    body = {"model": model, "messages": messages, "stream": True}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    text = ""
    for line in response.text.split("\n\n"):
        data = line.removeprefix("data: ").strip()
        if data and data != "[DONE]":
            for choice in json.loads(data)["choices"]:
                text += choice["delta"].get("content") or ""
    return text


@pytest.mark.parametrize("turns", [1, 2, 5])
async def test_history_directive_counts_the_user_turns(
    client: httpx.AsyncClient, turns: int
) -> None:
    users = [f"question {k}" for k in range(turns - 1)] + ["last [[history]]"]
    answer = await _answer(client, "scripted", _conversation(*users))
    assert answer == expected_history_answer(PERSONA, turns, "scripted")
    assert answer == f"Ada: turns={turns} model=scripted."


async def test_history_model_reports_the_requested_model(client: httpx.AsyncClient) -> None:
    answer = await _answer(client, HISTORY_MODEL, _conversation("one", "two"))
    assert answer == expected_history_answer(PERSONA, 2, HISTORY_MODEL)


async def test_without_history_the_answer_ignores_earlier_turns(
    client: httpx.AsyncClient,
) -> None:
    alone = await _answer(client, "scripted", _conversation("same"))
    after = await _answer(client, "scripted", _conversation("earlier", "same"))
    assert alone == after == expected_answer(PERSONA, "same")


async def test_requests_are_recorded_with_model_and_turns(client: httpx.AsyncClient) -> None:
    await _answer(client, "scripted-slow", _conversation("a", "b [[tps=0]]"))
    await _answer(client, HISTORY_MODEL, _conversation("c"))
    records = (await client.get("/_scripted/requests")).json()
    assert [(r["model"], r["user_turns"], r["user_message"]) for r in records] == [
        ("scripted-slow", 2, "b [[tps=0]]"),
        (HISTORY_MODEL, 1, "c"),
    ]
    assert records[0]["persona"] == PERSONA
