"""The AI SDK's own client on our UI message streams (one agent per stream).

``DefaultChatTransport`` (what ``useChat`` uses: the request, the SSE parsing and the
validation of every part) and ``readUIMessageStream`` (which rebuilds the assistant message
from the parts) must rebuild each agent's answer exactly as our own SSE stream has it.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from orchestrator.testing._modelserver import expected_answer
from tests._servers import SpawnedServer
from tests._wait import wait_until_sync
from tests.letta.conftest import CreateAgent

from .conftest import run_node, sse_texts

pytestmark = pytest.mark.usefixtures("node_clients")


def start(server: SpawnedServer, *agents: str) -> str:
    body = {"agents": [{"agent_id": a} for a in agents], "message": "Hi"}
    response = httpx.post(f"{server.url}/v1/fanouts", json=body, timeout=30)
    assert response.status_code == 201, response.text
    fanout_id: str = response.json()["fanout_id"]
    return fanout_id


def stream_url(server: SpawnedServer, fanout_id: str, agent: str) -> str:
    return f"{server.url}/v1/fanouts/{fanout_id}/agents/{agent}/ui-message-stream"


def read(url: str, **extra: Any) -> dict[str, Any]:
    return run_node("ui_stream_read.mjs", {"get": url, **extra})


def send(server: SpawnedServer, chat: str, text: str, body: dict[str, Any]) -> dict[str, Any]:
    config = {"post": f"{server.url}/v1/ui-message-stream", "chatId": chat, "text": text}
    return run_node("ui_stream_read.mjs", {**config, "body": body})


def test_read_ui_message_stream_rebuilds_each_answer(scripted_server: SpawnedServer) -> None:
    fanout = start(scripted_server, "alpha", "beta")
    ours = sse_texts(scripted_server.url, fanout)
    read_back = {a: read(stream_url(scripted_server, fanout, a)) for a in ("alpha", "beta")}
    assert {a: r["text"] for a, r in read_back.items()} == ours
    assert ours == {"alpha": "Hello, world.", "beta": "Bonjour le monde"}
    for agent, result in read_back.items():
        assert result["errors"] == []
        assert result["chunks"][:2] == ["start", "start-step"]
        assert result["chunks"][-2:] == ["finish-step", "finish"]
        message = result["message"]
        assert message["id"] == f"{fanout}.{agent}"
        assert message["metadata"]["fanout_id"] == fanout
        assert message["metadata"]["label"] == agent
        assert message["metadata"]["stop_reason"] == "end_turn"
        assert message["metadata"]["usage"]["total_tokens"] > 0
    parts = read_back["alpha"]["message"]["parts"]
    assert [p["text"] for p in parts if p["type"] == "reasoning"] == ["hm"]
    tools = [p for p in read_back["beta"]["message"]["parts"] if p["type"] == "dynamic-tool"]
    assert [(t["toolName"], t["input"], t["output"], t["state"]) for t in tools] == [
        ("lookup", {"q": "x"}, "ok", "output-available")
    ]


def test_an_error_and_a_cancellation_end_the_stream_as_the_ai_sdk_expects(
    scripted_server: SpawnedServer,
) -> None:
    fanout = start(scripted_server, "failer", "staller")
    failed = read(stream_url(scripted_server, fanout, "failer"))
    assert failed["errors"] == ["scripted_failure: failer: scripted failure at token 1"]
    assert failed["text"] == "a"
    assert failed["chunks"][-3:] == ["finish-step", "error", "finish"]
    assert failed["message"]["metadata"]["state"] == "error"
    # staller never ends by itself; cancelled through the REST endpoint, its stream ends
    # with the AI SDK's abort part.
    cancel = httpx.post(
        f"{scripted_server.url}/v1/fanouts/{fanout}/cancel", json={"agent_id": "staller"}
    )
    assert cancel.status_code == 202
    stopped = read(stream_url(scripted_server, fanout, "staller"))
    assert stopped["errors"] == []
    assert stopped["chunks"][-2:] == ["finish-step", "abort"]
    assert stopped["text"] == "one two "


def test_use_chat_post_streams_one_column_while_the_others_run(
    scripted_server: SpawnedServer,
) -> None:
    body = {"agents": [{"agent_id": "alpha"}, {"agent_id": "beta", "label": "B"}], "column": "B"}
    chosen = send(scripted_server, "chat-1", "Hi", body)
    assert chosen["errors"] == []
    assert chosen["text"] == "Bonjour le monde"
    metadata = chosen["message"]["metadata"]
    assert (metadata["agent_id"], metadata["label"]) == ("beta", "B")
    # The other agent ran in the same fan-out: its own stream, from the announced id.
    other = read(stream_url(scripted_server, metadata["fanout_id"], "alpha"))
    assert other["text"] == "Hello, world."
    assert sse_texts(scripted_server.url, metadata["fanout_id"]) == {
        "alpha": other["text"],
        "beta": chosen["text"],
    }
    # Nothing of that chat runs any more: useChat's resume gets 204 (no stream).
    resumed = read(f"{scripted_server.url}/v1/ui-message-stream/chat-1/stream")
    assert resumed["message"] is None


def test_the_stream_is_framed_as_the_ai_sdk_specifies(scripted_server: SpawnedServer) -> None:
    fanout = start(scripted_server, "alpha")
    with httpx.stream("GET", stream_url(scripted_server, fanout, "alpha"), timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
        assert response.headers["content-type"].startswith("text/event-stream")
        body = response.read().decode()
    assert body.endswith("data: [DONE]\n\n")
    assert "\r" not in body


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/fanouts/f-nope/agents/alpha", 404, "fanout_not_found"),
        ("AGENT/nobody", 404, "agent_not_found"),
    ],
)
def test_unknown_fanout_or_agent_is_a_404(
    scripted_server: SpawnedServer, path: str, status: int, code: str
) -> None:
    if path.startswith("AGENT/"):
        path = f"/v1/fanouts/{start(scripted_server, 'alpha')}/agents/{path[6:]}"
    response = httpx.get(f"{scripted_server.url}{path}/ui-message-stream", timeout=30)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"agents": None}, "agents"),
        ({"column": 5}, "column"),
        ({"column": "nobody"}, "column"),
        (
            {"messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": " "}]}]},
            "messages",
        ),
        ({"id": "a/b"}, "id"),
    ],
)
def test_bad_chat_requests_name_the_field(
    scripted_server: SpawnedServer, changes: dict[str, Any], names: str
) -> None:
    body: dict[str, Any] = {
        "id": "chat-x",
        "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}],
        "agents": [{"agent_id": "alpha"}],
        **changes,
    }
    response = httpx.post(f"{scripted_server.url}/v1/ui-message-stream", json=body, timeout=30)
    assert response.status_code in (404, 422), response.text
    assert names in response.json()["error"]["message"], response.text


@pytest.mark.letta
async def test_over_letta_use_chat_and_the_other_column_rebuild_the_answers(
    letta_server: SpawnedServer, scripted_agent: CreateAgent
) -> None:
    personas = ["Optimist. You look for what could go right.", "Historian. You cite precedent."]
    ids = [await scripted_agent(p) for p in personas]
    prompt = "Should we ship on Friday? [[words=20]]"

    def both() -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
        body = {"agents": [{"agent_id": a} for a in ids], "column": 0}
        chosen = send(letta_server, "chat-letta", prompt, body)
        fanout = chosen["message"]["metadata"]["fanout_id"]
        other = read(stream_url(letta_server, fanout, ids[1]))
        return chosen, other, sse_texts(letta_server.url, fanout)

    chosen, other, ours = await anyio.to_thread.run_sync(both)
    assert chosen["errors"] == other["errors"] == []
    assert {ids[0]: chosen["text"], ids[1]: other["text"]} == ours
    assert ours == {a: expected_answer(p, prompt) for a, p in zip(ids, personas, strict=True)}


def test_stop_cancels_the_posting_column_only(scripted_server: SpawnedServer) -> None:
    body = {"agents": [{"agent_id": "alpha"}, {"agent_id": "staller"}], "column": "staller"}
    config = {
        "post": f"{scripted_server.url}/v1/ui-message-stream",
        "chatId": "chat-stop",
        "text": "Hi",
        "body": body,
        "stopAfterDelta": True,
    }
    out = run_node("ui_stream_read.mjs", config)
    assert out["stopped"] or out["chunks"].count("text-delta") >= 1
    fanouts = httpx.get(f"{scripted_server.url}/v1/fanouts?limit=1").json()["fanouts"]
    fanout = fanouts[0]["fanout_id"]

    def states() -> dict[str, Any]:
        agents = httpx.get(f"{scripted_server.url}/v1/fanouts/{fanout}").json()["agents"]
        return {a: (s["state"], s.get("reason")) for a, s in agents.items()}

    # staller never ends by itself: its stream's client leaving cancelled it; alpha, read by
    # nobody, ran to its end.
    wait_until_sync(lambda: states()["staller"][0] == "cancelled", "stop() to cancel staller")
    wait_until_sync(lambda: states()["alpha"][0] != "running", "alpha to end")
    assert states() == {"staller": ("cancelled", "disconnect"), "alpha": ("done", None)}


def test_resume_replays_a_running_column_and_answers_204_otherwise(
    scripted_server: SpawnedServer,
) -> None:
    resume = f"{scripted_server.url}/v1/ui-message-stream/chat-resume/stream"
    assert httpx.get(resume).status_code == 204  # nothing sent yet
    body = {
        "id": "chat-resume",
        "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}],
        "agents": [{"agent_id": "staller"}],
        "options": {"on_disconnect": "continue"},
    }
    with httpx.stream(
        "POST", f"{scripted_server.url}/v1/ui-message-stream", json=body, timeout=30
    ) as first:
        fanout = first.headers["x-fanout-id"]
        lines = first.iter_lines()
        assert '"text-delta"' in next(line for line in lines if "text-delta" in line)
        # The column still runs (staller never ends): a resume replays it from the start.
        with httpx.stream("GET", resume, timeout=30) as again:
            assert again.status_code == 200
            replayed = again.iter_lines()
            assert '"start"' in next(line for line in replayed if line.startswith("data:"))
            assert "one " in next(line for line in replayed if "text-delta" in line)
    cancel = httpx.post(f"{scripted_server.url}/v1/fanouts/{fanout}/cancel")
    assert cancel.status_code == 202
    wait_until_sync(lambda: httpx.get(resume).status_code == 204, "the ended chat to answer 204")
