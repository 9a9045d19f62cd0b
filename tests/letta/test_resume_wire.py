"""Background resume on the wire, against a scripted HTTP transport (no server).

Each test scripts the bodies the "server" sends: a body that breaks after some frames, what
``POST /v1/runs/{id}/stream`` answers, so what the source asks and what it makes of the
answers can be checked exactly.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence

import httpx
import pytest
from letta_client import AsyncLetta

from orchestrator import LettaSource, SourceEvent

pytestmark = pytest.mark.anyio

RUN = "run-0001"
TOKENS = ["One", " two", " three", " four", " five", " six"]


def frames() -> list[bytes]:
    out = [{"message_type": "ping", "run_id": RUN, "seq_id": 1}]
    for n, token in enumerate(TOKENS, start=2):
        out.append(
            {"message_type": "assistant_message", "otid": "m", "run_id": RUN, "seq_id": n}
            | {"content": token}
        )
    tail: list[dict[str, object]] = [
        {"message_type": "stop_reason", "stop_reason": "end_turn"},
        {"message_type": "usage_statistics", "completion_tokens": 6, "total_tokens": 10},
    ]
    return [b"data: " + json.dumps(f).encode() + b"\n\n" for f in [*out, *tail]] + [
        b"data: [DONE]\n\n"
    ]


class Body(httpx.AsyncByteStream):
    """A response body that sends ``chunks`` and then breaks (or ends) as told."""

    def __init__(self, chunks: Sequence[bytes], *, breaks: bool) -> None:
        self.chunks = chunks
        self.breaks = breaks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.breaks:
            raise httpx.RemoteProtocolError("peer closed connection")


SSE = {"content-type": "text/event-stream"}
Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler, seen: list[httpx.Request]) -> AsyncLetta:
    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(record))
    return AsyncLetta(base_url="http://letta.test", http_client=http, max_retries=0)


async def run(source: LettaSource) -> list[SourceEvent]:
    return [sev async for sev in source.stream("hi")]


def text(events: Sequence[SourceEvent]) -> str:
    return "".join(str(e.data["delta"]) for e in events if e.type == "content")


async def test_a_broken_body_is_resumed_after_the_last_seq_id() -> None:
    all_frames = frames()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/messages"):
            # Four frames and half of the fifth, then the connection breaks.
            half = all_frames[4][:20]
            return httpx.Response(
                200, headers=SSE, stream=Body([*all_frames[:4], half], breaks=True)
            )
        after = json.loads(request.content)["starting_after"]
        return httpx.Response(200, headers=SSE, stream=Body(all_frames[after:], breaks=False))

    async with client_for(handler, seen) as client:
        source = LettaSource(client, "agent-1", background=True, retry_initial_s=0.001)
        events = await run(source)

    assert text(events) == "".join(TOKENS)
    assert [e.data["cursor"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1].type == "agent_done"
    assert [r.url.path for r in seen] == [
        "/v1/conversations/default/messages",
        f"/v1/runs/{RUN}/stream",
    ]
    sent = json.loads(seen[0].content)
    assert sent["background"] is True
    assert sent["agent_id"] == "agent-1"
    assert sent["messages"][0]["otid"] == source.otid
    assert json.loads(seen[1].content)["starting_after"] == 4
    assert (source.resumes, source.attempts) == (1, 1)


async def test_a_run_the_server_cannot_replay_ends_unavailable() -> None:
    all_frames = frames()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/messages"):
            return httpx.Response(200, headers=SSE, stream=Body(all_frames[:3], breaks=True))
        return httpx.Response(503, json={"detail": "Background streaming requires Redis"})

    async with client_for(handler, seen) as client:
        events = await run(LettaSource(client, "agent-1", background=True))

    assert events[-1].type == "agent_error"
    assert events[-1].data["code"] == "unavailable"
    assert "503" in str(events[-1].data["message"])
    assert len(seen) == 2  # a refusal is not retried


async def test_reconnections_that_bring_nothing_are_bounded() -> None:
    all_frames = frames()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/messages"):
            return httpx.Response(200, headers=SSE, stream=Body(all_frames[:3], breaks=True))
        return httpx.Response(200, headers=SSE, stream=Body([], breaks=True))

    async with client_for(handler, seen) as client:
        source = LettaSource(
            client, "agent-1", background=True, resume_retries=2, retry_initial_s=0.001
        )
        events = await run(source)

    assert events[-1].data["code"] == "unavailable"
    assert source.resumes == 3  # three empty bodies: the third gives up
    assert text(events) == "".join(TOKENS[:2])


async def test_a_bad_frame_is_a_protocol_error_not_a_reason_to_resume() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers=SSE, stream=Body([*frames()[:2], b"data: {nope\n\n"], breaks=False)
        )

    async with client_for(handler, seen) as client:
        events = await run(LettaSource(client, "agent-1", background=True))

    assert events[-1].data["code"] == "protocol_error"
    assert len(seen) == 1
