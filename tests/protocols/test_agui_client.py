"""``@ag-ui/client``'s ``HttpAgent.runAgent`` against ``POST /v1/ag-ui`` on a real server.

The client verifies the event sequence itself (a verification error rejects ``runAgent``)
and builds the thread's messages from the events, as CopilotKit does: each agent's answer
must arrive as one assistant message whose text is that agent's answer in our own SSE
stream of the same fan-out.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from letta_client import AsyncLetta

from orchestrator.stack._stack import StackInfo
from orchestrator.testing._modelserver import (
    expected_answer,
    expected_history_answer,
    expected_reasoning,
)
from tests._servers import SpawnedServer
from tests._wait import wait_until_sync
from tests.letta.conftest import SCRIPTED_MODEL, CreateAgent

from .conftest import run_node, sse_texts

pytestmark = pytest.mark.usefixtures("node_clients")

HISTORY = "What have you been told? [[history]]"


def run(
    server: SpawnedServer,
    props: dict[str, Any],
    prompts: tuple[str, ...] = ("Hi",),
    thread: str = "thread-1",
    **extra: Any,
) -> dict[str, Any]:
    config = {
        "url": f"{server.url}/v1/ag-ui",
        "threadId": thread,
        "prompts": list(prompts),
        "forwardedProps": props,
        **extra,
    }
    return run_node("agui_run.mjs", config)


def fanout_of(events: list[dict[str, Any]]) -> str:
    announced = [e for e in events if e["type"] == "CUSTOM" and e["name"] == "fanout_start"]
    assert len(announced) == 1, announced
    fanout_id: str = announced[0]["value"]["fanout_id"]
    return fanout_id


def answers(messages: list[dict[str, Any]]) -> dict[str, str]:
    """The assistant messages by agent; an agent with two messages fails the test."""
    out: dict[str, str] = {}
    for message in messages:
        if message["role"] != "assistant":
            continue
        agent = message["subagentRunId"]
        assert agent not in out, f"two assistant messages for {agent}: {messages}"
        out[agent] = message.get("content") or ""
    return out


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] if e["type"] != "CUSTOM" else f"CUSTOM {e['name']}" for e in events]


def test_run_agent_ends_with_one_assistant_message_per_agent(
    scripted_server: SpawnedServer,
) -> None:
    out = run(scripted_server, {"agents": [{"agent_id": "alpha"}, {"agent_id": "beta"}]})
    (first,) = out["runs"]
    assert first["error"] is None
    fanout = fanout_of(first["events"])
    assert answers(first["newMessages"]) == sse_texts(scripted_server.url, fanout)
    assert answers(first["newMessages"]) == {"alpha": "Hello, world.", "beta": "Bonjour le monde"}
    by_id = {m["id"]: m for m in first["newMessages"]}
    # beta's tool call sits in its answer message; the result follows as a tool message.
    beta = by_id[f"{fanout}.beta"]
    assert beta["name"] == "beta"
    assert [c["function"]["name"] for c in beta["toolCalls"]] == ["lookup"]
    assert [m["content"] for m in first["newMessages"] if m["role"] == "tool"] == ["ok"]
    # alpha's reasoning is a reasoning message of its own.
    assert [m["content"] for m in first["newMessages"] if m["role"] == "reasoning"] == ["hm"]
    seen = types(first["events"])
    assert seen[:2] == ["RUN_STARTED", "CUSTOM fanout_start"]
    assert seen[-2:] == ["CUSTOM fanout_done", "RUN_FINISHED"]
    assert seen.count("CUSTOM usage") == 2
    assert seen.count("CUSTOM agent_done") == 2
    assert not [t for t in seen if t.startswith("SUBAGENT_")]  # not asked for
    # An ordinary fan-out: its status is served like any other.
    status = httpx.get(f"{scripted_server.url}/v1/fanouts/{fanout}").json()
    assert {a: s["state"] for a, s in status["agents"].items()} == {"alpha": "done", "beta": "done"}


def test_an_error_is_a_custom_event_or_on_request_a_subagent_error(
    scripted_server: SpawnedServer,
) -> None:
    agents = [{"agent_id": "alpha"}, {"agent_id": "failer"}]
    plain = run(scripted_server, {"agents": agents})["runs"][0]
    assert plain["error"] is None
    errors = [e for e in plain["events"] if e["type"] == "CUSTOM" and e["name"] == "agent_error"]
    assert [(e["subagentRunId"], e["value"]["code"]) for e in errors] == [
        ("failer", "scripted_failure")
    ]
    assert not [t for t in types(plain["events"]) if t.startswith("SUBAGENT_")]
    # The text the failing agent sent before its error is still its (closed) message.
    assert answers(plain["newMessages"]) == {"alpha": "Hello, world.", "failer": "a"}

    opted = run(scripted_server, {"agents": agents, "subagentEvents": True})["runs"][0]
    assert opted["error"] is None
    lives = [
        (e["type"], e["subagentRunId"], e.get("code"))
        for e in opted["events"]
        if e["type"].startswith("SUBAGENT_")
    ]
    assert sorted(lives) == [
        ("SUBAGENT_ERROR", "failer", "scripted_failure"),
        ("SUBAGENT_FINISHED", "alpha", None),
        ("SUBAGENT_STARTED", "alpha", None),
        ("SUBAGENT_STARTED", "failer", None),
    ]
    assert not [t for t in types(opted["events"]) if t == "CUSTOM agent_error"]


def test_the_header_opts_in_too(scripted_server: SpawnedServer) -> None:
    out = run(
        scripted_server,
        {"agents": [{"agent_id": "alpha"}]},
        headers={"X-AG-UI-Subagent-Events": "true"},
    )["runs"][0]
    assert out["error"] is None
    assert "SUBAGENT_FINISHED" in types(out["events"])


@pytest.mark.parametrize("opt_in", [False, True])
def test_cancel_through_the_rest_endpoint_ends_that_agent(
    scripted_server: SpawnedServer, opt_in: bool
) -> None:
    # staller never ends by itself: the run can only finish because the cancel worked.
    props = {"agents": [{"agent_id": "alpha"}, {"agent_id": "staller"}], "subagentEvents": opt_in}
    out = run(scripted_server, props, cancelUrl=scripted_server.url, cancelAgent="staller")["runs"][
        0
    ]
    assert out["error"] is None
    assert types(out["events"])[-1] == "RUN_FINISHED"
    if opt_in:
        cancelled = [e for e in out["events"] if e["type"] == "SUBAGENT_ERROR"]
        assert [(e["subagentRunId"], e["code"]) for e in cancelled] == [("staller", "cancelled")]
    else:
        cancelled = [e for e in out["events"] if e.get("name") == "agent_cancelled"]
        assert [(e["subagentRunId"], e["value"]["reason"]) for e in cancelled] == [
            ("staller", "user")
        ]
    status = httpx.get(f"{scripted_server.url}/v1/fanouts/{fanout_of(out['events'])}").json()
    assert status["agents"]["staller"]["state"] == "cancelled"


def test_a_preset_names_the_agents(scripted_server: SpawnedServer) -> None:
    out = run(scripted_server, {"preset": "duo"})["runs"][0]
    assert out["error"] is None
    labels = {m["subagentRunId"]: m["name"] for m in out["newMessages"] if m["role"] == "assistant"}
    assert labels == {"alpha": "A", "beta": "B"}


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "threadId": "t-1",
        "runId": "r-1",
        "messages": [{"id": "m1", "role": "user", "content": "Hi"}],
        "state": {},
        "tools": [],
        "context": [],
        "forwardedProps": {"agents": [{"agent_id": "alpha"}]},
    }
    return {**body, **changes}


@pytest.mark.parametrize(
    ("changes", "status", "names"),
    [
        ({"forwardedProps": {}}, 422, "forwardedProps"),
        ({"forwardedProps": {"agents": []}}, 422, "forwardedProps.agents"),
        ({"forwardedProps": {"preset": "nope"}}, 422, "forwardedProps.preset"),
        ({"messages": [{"id": "a", "role": "assistant", "content": "x"}]}, 422, "messages"),
        ({"messages": [{"id": "u", "role": "user", "content": "   "}]}, 422, "messages"),
        ({"threadId": "../x"}, 422, "threadId"),
        ({"threadId": "t" * 65}, 422, "threadId"),
        ({"state": {"k": "\u0001"}}, 422, "state.k"),
        ({"runId": None}, 422, "runId"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    scripted_server: SpawnedServer, changes: dict[str, Any], status: int, names: str
) -> None:
    response = httpx.post(f"{scripted_server.url}/v1/ag-ui", json=_body(**changes), timeout=30)
    assert response.status_code == status, response.text
    assert names in response.json()["error"]["message"], response.text


def conversations(events: list[dict[str, Any]]) -> dict[str, str]:
    """Each agent's Letta conversation, as its ``agent_start`` announced it."""
    starts = [e for e in events if e["type"] == "CUSTOM" and e["name"] == "agent_start"]
    return {e["subagentRunId"]: e["value"]["conversation_id"] for e in starts}


@pytest.mark.letta
async def test_over_letta_each_answer_is_one_message_and_a_second_run_continues_the_thread(
    letta_server: SpawnedServer, scripted_agent: CreateAgent, letta_client: AsyncLetta
) -> None:
    personas = ["Optimist. You look for what could go right.", "Skeptic. You question all."]
    ids = [await scripted_agent(p) for p in personas]
    props = {"agents": [{"agent_id": a} for a in ids], "subagentEvents": True}
    thread = f"thread-{uuid.uuid4().hex[:12]}"
    prompts = ("Is the plan sound? [[words=9]]", "And the budget? [[words=7]]")

    def two_runs() -> dict[str, Any]:
        out = run(letta_server, props, prompts, thread=thread)
        for result in out["runs"]:
            result["ours"] = sse_texts(letta_server.url, fanout_of(result["events"]))
        return out

    out = await anyio.to_thread.run_sync(two_runs)
    for prompt, result in zip(prompts, out["runs"], strict=True):
        assert result["error"] is None
        got = answers(result["newMessages"])
        assert got == result["ours"]
        assert got == {a: expected_answer(p, prompt) for a, p in zip(ids, personas, strict=True)}
    # The second run went to the same conversations (the threadId is the session), and
    # each conversation on the Letta server holds both turns.
    first, second = (conversations(r["events"]) for r in out["runs"])
    assert first == second
    assert set(first) == set(ids)
    for conversation in first.values():
        sent = [
            str(getattr(m, "content", ""))
            async for m in letta_client.conversations.messages.list(conversation, order="asc")
            if getattr(m, "message_type", None) == "user_message"
        ]
        assert sent == list(prompts)


@pytest.fixture
async def history_model(letta_stack: StackInfo) -> None:
    """The stack's model server must know the ``history`` directive."""
    url = letta_stack.model_base_url.removesuffix("/v1") + "/_scripted/requests"
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    if response.status_code != 200:
        pytest.fail(
            "the stack's model server predates the history directive: restart it with "
            "'orchestrator stack down && orchestrator stack up'"
        )


@pytest.mark.letta
@pytest.mark.usefixtures("history_model")
async def test_over_letta_the_model_sees_the_first_run_in_the_second(
    letta_server: SpawnedServer, scripted_agent: CreateAgent
) -> None:
    personas = ["Optimist. You look for what could go right.", "Skeptic. You question all."]
    ids = [await scripted_agent(p) for p in personas]
    props = {"agents": [{"agent_id": a} for a in ids]}
    thread = f"thread-{uuid.uuid4().hex[:12]}"
    model = SCRIPTED_MODEL.rpartition("/")[2]
    out = await anyio.to_thread.run_sync(
        lambda: run(letta_server, props, (HISTORY, HISTORY), thread=thread)
    )
    assert [r["error"] for r in out["runs"]] == [None, None]
    # The history model answers with the number of user turns its request carried.
    assert [answers(r["newMessages"]) for r in out["runs"]] == [
        {a: expected_history_answer(p, turns, model) for a, p in zip(ids, personas, strict=True)}
        for turns in (1, 2)
    ]


def test_abort_run_cancels_the_agents_still_running(scripted_server: SpawnedServer) -> None:
    props = {"agents": [{"agent_id": "alpha"}, {"agent_id": "staller"}]}
    out = run(scripted_server, props, abortAfterText=True)["runs"][0]
    assert out["error"] is None
    fanout = fanout_of(out["events"])

    def staller_cancelled() -> bool:
        agents = httpx.get(f"{scripted_server.url}/v1/fanouts/{fanout}").json()["agents"]
        return bool(agents["staller"]["state"] == "cancelled")

    # staller never ends by itself: only the client's leaving can have cancelled it.
    wait_until_sync(staller_cancelled, "the disconnect to cancel staller")
    agents = httpx.get(f"{scripted_server.url}/v1/fanouts/{fanout}").json()["agents"]
    assert agents["staller"]["reason"] == "disconnect"


@pytest.mark.letta
async def test_over_letta_one_agent_with_two_models_is_two_attributed_answers(
    letta_server: SpawnedServer, scripted_agent: CreateAgent
) -> None:
    persona = "Historian. You answer with precedent."
    agent = await scripted_agent(persona)
    models = [SCRIPTED_MODEL, SCRIPTED_MODEL.replace("scripted", "scripted-reasoning")]
    props = {"agents": [{"agent_id": agent, "model": m} for m in models]}
    prompt = "What happened last time? [[words=6]]"
    thread = f"thread-{uuid.uuid4().hex[:12]}"
    out = await anyio.to_thread.run_sync(lambda: run(letta_server, props, (prompt,), thread=thread))
    result = out["runs"][0]
    assert result["error"] is None
    columns = [f"{agent}.1", f"{agent}.2"]
    assert answers(result["newMessages"]) == dict.fromkeys(
        columns, expected_answer(persona, prompt)
    )
    # The model reached Letta: only the reasoning model's column has a reasoning message.
    reasoning = {
        m["subagentRunId"]: m["content"] for m in result["newMessages"] if m["role"] == "reasoning"
    }
    assert reasoning == {columns[1]: expected_reasoning(persona, prompt)}
