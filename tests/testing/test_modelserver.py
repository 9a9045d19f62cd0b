"""The scripted model server: OpenAI wire format, determinism and every directive."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.types import Message, Scope

from orchestrator.testing._modelserver import (
    DEFAULT_EMBEDDING_DIM,
    MODEL_PRESETS,
    Directives,
    create_app,
    expected_answer,
    expected_reasoning,
    extract_persona,
    parse_directives,
    strip_directives,
)

pytestmark = pytest.mark.anyio

PERSONA = "Ada is a careful assistant.\nShe answers briefly."
SYSTEM = (
    "You are Letta.\n<memory_blocks>\n<persona>\n<description>\nWho you are.\n</description>\n"
    "<metadata>\n- chars_current=10\n</metadata>\n<value>\n"
    f"{PERSONA}\n</value>\n</persona>\n\n<human>\n<value>\nBob\n</value>\n</human>\n</memory_blocks>"
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["query", "limit"],
            },
        },
    }
]


def _body(message: str, *, stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "model": "scripted",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": message}],
        "stream": stream,
        "stream_options": {"include_usage": True},
        "tools": TOOLS,
        "tool_choice": "auto",
        **extra,
    }


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://model") as http:
        yield http


def _events(text: str) -> list[Any]:
    lines = [line.removeprefix("data: ") for line in text.split("\n\n") if line.strip()]
    assert all(not line.startswith("data:") for line in lines)
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def _joined(chunks: list[Any], field: str) -> str:
    return "".join(c["choices"][0]["delta"].get(field) or "" for c in chunks if c.get("choices"))


async def test_models_lists_the_presets(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models")
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == list(MODEL_PRESETS)


async def test_streaming_answer_usage_and_done(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=_body("Hello there"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = _events(response.text)
    assert _joined(chunks, "content") == expected_answer(PERSONA, "Hello there")
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] == "stop"
    usage = chunks[-1]
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == len(
        expected_answer(PERSONA, "Hello there").split()
    )
    assert usage["usage"]["total_tokens"] == (
        usage["usage"]["prompt_tokens"] + usage["usage"]["completion_tokens"]
    )


async def test_no_usage_chunk_without_include_usage(client: httpx.AsyncClient) -> None:
    body = _body("Hello")
    del body["stream_options"]
    chunks = _events((await client.post("/v1/chat/completions", json=body)).text)
    assert all("usage" not in c for c in chunks)


async def test_non_streaming(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", json=_body("Hi [[reasoning]]", stream=False)
    )
    data = response.json()
    message = data["choices"][0]["message"]
    assert message["content"] == expected_answer(PERSONA, "Hi [[reasoning]]")
    assert message["reasoning_content"] == expected_reasoning(PERSONA, "Hi [[reasoning]]")
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["completion_tokens"] > 0


async def test_deterministic_and_persona_dependent(client: httpx.AsyncClient) -> None:
    first = await client.post("/v1/chat/completions", json=_body("Same question"))
    second = await client.post("/v1/chat/completions", json=_body("Same question"))
    assert _joined(_events(first.text), "content") == _joined(_events(second.text), "content")
    assert expected_answer("Bob", "Same question") != expected_answer("Cleo", "Same question")
    assert expected_answer(PERSONA, "Same question") != expected_answer(PERSONA, "Other question")
    assert expected_answer("Bob is here.", "q").startswith("Bob: ")


def test_persona_extraction_handles_line_numbers_and_absence() -> None:
    assert extract_persona(SYSTEM) == PERSONA
    numbered = "<persona>\n<value>\n1→ Ada is here.\n2→ Second line.\n</value>\n</persona>"
    assert extract_persona(numbered) == "Ada is here.\nSecond line."
    assert extract_persona("no blocks at all") == ""


def test_directive_grammar() -> None:
    parsed = parse_directives(
        "Q [[tps=50 words=40 reasoning tool=lookup fail=429@5 stall@4 fail_times=2]]"
    )
    assert parsed == Directives(
        tps=50, words=40, reasoning=True, tool="lookup", fail_status=429, fail_at=5,
        stall_at=4, fail_times=2,
    )  # fmt: skip
    assert parse_directives("plain message") == Directives()
    assert strip_directives("  Q  [[words=3]] rest ") == "Q rest"
    with pytest.raises(ValueError, match="unknown"):
        parse_directives("Q [[bogus]]")


async def test_unknown_directive_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=_body("Q [[nope=1]]"))
    assert response.status_code == 400


async def test_words_sets_the_length(client: httpx.AsyncClient) -> None:
    text = _joined(
        _events((await client.post("/v1/chat/completions", json=_body("Q [[words=40]]"))).text),
        "content",
    )
    assert text == expected_answer(PERSONA, "Q [[words=40]]")
    assert len(text.split()) == 41  # the "Name:" prefix plus 40 words


async def test_reasoning_streams_before_the_answer(client: httpx.AsyncClient) -> None:
    chunks = _events(
        (await client.post("/v1/chat/completions", json=_body("Q [[reasoning]]"))).text
    )
    assert _joined(chunks, "reasoning_content") == expected_reasoning(PERSONA, "Q [[reasoning]]")
    kinds = [
        next(iter(c["choices"][0]["delta"]))
        for c in chunks[1:]
        if c["choices"] and c["choices"][0]["delta"]
    ]
    assert kinds.index("content") > kinds.index("reasoning_content")
    assert "reasoning_content" not in kinds[kinds.index("content") :]


async def test_model_preset_adds_directives(client: httpx.AsyncClient) -> None:
    body = _body("Q", model="scripted-reasoning")
    chunks = _events((await client.post("/v1/chat/completions", json=body)).text)
    assert _joined(chunks, "reasoning_content") == expected_reasoning(PERSONA, "Q")


async def test_tool_call_then_answer_after_tool_result(client: httpx.AsyncClient) -> None:
    message = "Find it [[tool=lookup]]"
    chunks = _events((await client.post("/v1/chat/completions", json=_body(message))).text)
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert len(calls) == 1
    assert calls[0]["function"]["name"] == "lookup"
    assert json.loads(calls[0]["function"]["arguments"]) == {"query": "scripted", "limit": 1}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert _joined(chunks, "content") == ""

    body = _body(message)
    body["messages"] += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": calls[0]["id"], "type": "function", "function": calls[0]["function"]}
            ],
        },
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "found"},
    ]
    after = _events((await client.post("/v1/chat/completions", json=body)).text)
    assert _joined(after, "content") == expected_answer(PERSONA, message)


@pytest.mark.parametrize("status", [429, 500])
async def test_fail_at_zero_is_an_http_status(client: httpx.AsyncClient, status: int) -> None:
    response = await client.post("/v1/chat/completions", json=_body(f"Q [[fail={status}@0]]"))
    assert response.status_code == status
    assert response.json()["error"]["code"] == str(status)


async def test_fail_mid_stream_sends_k_tokens_then_an_error(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=_body("Q [[fail=500@3]]"))
    assert response.status_code == 200
    lines = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line.strip()]
    assert "[DONE]" not in lines
    payloads = [json.loads(line) for line in lines]
    assert payloads[-1]["error"]["code"] == "500"
    tokens = _joined(payloads[:-1], "content")
    assert tokens == " ".join(expected_answer(PERSONA, "Q").split()[:3])


async def test_fail_times_fails_first_n_then_succeeds(client: httpx.AsyncClient) -> None:
    body = _body("Retry me [[fail_times=2]]")
    statuses = [
        (await client.post("/v1/chat/completions", json=body)).status_code for _ in range(3)
    ]
    assert statuses == [500, 500, 200]
    other = _body("Another prompt [[fail=429@0 fail_times=1]]")
    statuses = [
        (await client.post("/v1/chat/completions", json=other)).status_code for _ in range(2)
    ]
    assert statuses == [429, 200]


async def test_tps_paces_the_stream(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    await client.post("/v1/chat/completions", json=_body("Q [[tps=100 words=9]]"))
    # 10 tokens at 100 tokens/s cannot take less than 0.1 s.
    assert time.monotonic() - started >= 0.09


async def test_stall_keeps_the_connection_open_after_k_tokens() -> None:
    app = create_app()
    body = json.dumps(_body("Q [[stall@2]]")).encode()
    sent: list[Message] = []
    received_request = False

    async def receive() -> Message:
        nonlocal received_request
        if not received_request:
            received_request = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "server": ("model", 80),
        "client": ("test", 1),
        "scheme": "http",
        "root_path": "",
    }
    async with anyio.create_task_group() as tg:
        tg.start_soon(app, scope, receive, send)
        await anyio.wait_all_tasks_blocked()
        chunks = [
            m["body"].decode() for m in sent if m["type"] == "http.response.body" and m.get("body")
        ]
        assert sent[0]["status"] == 200
        text = "".join(chunks)
        assert "[DONE]" not in text
        payloads = [json.loads(x.removeprefix("data: ")) for x in text.split("\n\n") if x.strip()]
        assert len(payloads) == 3  # the role chunk and two tokens, then silence
        assert _joined(payloads, "content") == " ".join(expected_answer(PERSONA, "Q").split()[:2])
        tg.cancel_scope.cancel()


async def test_embeddings_are_deterministic_unit_vectors(client: httpx.AsyncClient) -> None:
    body = {"model": "text-embedding-3-small", "input": ["alpha", "beta"]}
    first = (await client.post("/v1/embeddings", json=body)).json()
    second = (await client.post("/v1/embeddings", json=body)).json()
    assert first["data"] == second["data"]
    vectors = [d["embedding"] for d in first["data"]]
    assert [len(v) for v in vectors] == [DEFAULT_EMBEDDING_DIM] * 2
    assert vectors[0] != vectors[1]
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-3
    small = (await client.post("/v1/embeddings", json={"input": "x", "dimensions": 8})).json()
    assert len(small["data"][0]["embedding"]) == 8
