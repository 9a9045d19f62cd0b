"""Background runs against the real Letta server of the local stack (it runs with Redis).

A background source's events carry cursors 1, 2, 3 ...; a connection cut mid-answer is
resumed from the run's stored stream with every token exactly once; a start retried after
its request reached the server reuses the message's otid, so the prompt is sent once; a
source revived from a hub's checkpoint continues the run where the checkpoint ends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

import httpx
import pytest
from letta_client import AsyncLetta, NotFoundError

from orchestrator import Checkpoint, LettaDirectory, LettaSource, SourceEvent, open_fanout
from orchestrator.stack._stack import StackInfo
from orchestrator.testing._modelserver import expected_answer
from tests.letta._proxy import open_cut_proxy
from tests.letta.conftest import CreateAgent

pytestmark = [pytest.mark.letta, pytest.mark.anyio]

PERSONA = "Tamsin keeps a lighthouse and answers in plain words."
# Slow enough that a cut or a stop lands mid-answer (the server stores chunks every 0.5 s).
SLOW = "Describe the harbour at night [[tps=25 words=40]]"


async def collect(stream: AsyncIterator[SourceEvent]) -> list[SourceEvent]:
    return [sev async for sev in stream]


async def read_then_drop(source: LettaSource, contents: int) -> list[SourceEvent]:
    """Stream ``SLOW`` until ``contents`` content events, then close the stream (as a dying
    replica does: no cancel)."""
    read: list[SourceEvent] = []
    stream = source.stream(SLOW)
    async for sev in stream:
        read.append(sev)
        if sum(e.type == "content" for e in read) == contents:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    return read


def text_of(events: Sequence[SourceEvent]) -> str:
    return "".join(str(sev.data["delta"]) for sev in events if sev.type == "content")


def cursors(events: Sequence[SourceEvent]) -> list[int]:
    return [int(sev.data["cursor"]) for sev in events]


def port_of(info: StackInfo) -> int:
    port = urlsplit(info.base_url).port
    assert port is not None
    return port


def body_of(request: bytes) -> dict[str, object]:
    # One HTTP/1.1 request with a Content-Length body (what httpx sends for JSON).
    head, _, body = request.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    parsed = json.loads(body[:length])
    assert isinstance(parsed, dict)
    return parsed


async def user_turns(info: StackInfo, agent_id: str, content: str) -> int:
    async with httpx.AsyncClient(base_url=info.base_url, timeout=30) as http:
        listed = (await http.get(f"/v1/agents/{agent_id}/messages", params={"limit": 100})).json()
    return sum(
        1 for m in listed if m["message_type"] == "user_message" and m.get("content") == content
    )


async def test_background_stream_has_the_answer_and_cursors_and_replays_identically(
    letta_client: AsyncLetta, scripted_agent: CreateAgent
) -> None:
    agent_id = await scripted_agent(PERSONA)
    message = "What is a lighthouse for? [[words=20 reasoning]]"
    source = LettaSource(letta_client, agent_id, background=True)
    events = await collect(source.stream(message))

    assert text_of(events) == expected_answer(PERSONA, message)
    assert events[0].type == "agent_start"
    assert events[0].data["run_id"] == source.run_id is not None
    assert events[-1] == SourceEvent(
        "agent_done", {"stop_reason": "end_turn", "cursor": len(events)}
    )
    assert cursors(events) == list(range(1, len(events) + 1))
    assert {"reasoning", "usage"} <= {sev.type for sev in events}
    assert source.resumes == 0
    assert source.attempts == 1

    # A replay of the stored run from its start maps to exactly the same events: the cursor
    # a hub logs names the same event on any replica.
    checkpoint = Checkpoint(source.agent_id, source.label, source.resume_spec(), source.run_id)
    replayed = await collect(LettaSource.revived(letta_client, checkpoint).stream("unused"))
    assert replayed == events


async def test_a_cut_mid_answer_is_resumed_with_every_token_once(
    letta_stack: StackInfo, scripted_agent: CreateAgent
) -> None:
    agent_id = await scripted_agent(PERSONA)
    async with open_cut_proxy(port_of(letta_stack), cut_after=6) as proxy:
        client = AsyncLetta(base_url=proxy.base_url, max_retries=0)
        try:
            source = LettaSource(client, agent_id, background=True, retry_initial_s=0.05)
            events = await collect(source.stream(SLOW))
        finally:
            await client.close()

    expected = expected_answer(PERSONA, SLOW)
    [cut] = proxy.broken
    assert cut.forwarded > 0  # the cut connection carried part of the answer, not all of it
    assert text_of(events) == expected
    assert events[-1].type == "agent_done"
    assert cursors(events) == list(range(1, len(events) + 1))
    assert sum(sev.type == "agent_start" for sev in events) == 1
    assert sum(sev.type == "usage" for sev in events) == 1
    assert source.resumes == 1
    assert source.attempts == 1  # the prompt was sent once; the rest came from the run
    assert any(b"/v1/runs/" in c.request and b"/stream" in c.request for c in proxy.connections)


async def test_a_retried_start_reuses_the_otid_and_sends_the_prompt_once(
    letta_stack: StackInfo, scripted_agent: CreateAgent
) -> None:
    agent_id = await scripted_agent(PERSONA)
    message = "Name three ships [[words=12]]"
    async with open_cut_proxy(port_of(letta_stack), drop_response=True) as proxy:
        client = AsyncLetta(base_url=proxy.base_url, max_retries=0)
        try:
            source = LettaSource(client, agent_id, background=True, retry_initial_s=0.05)
            events = await collect(source.stream(message))
        finally:
            await client.close()

    assert len(proxy.broken) == 1
    assert text_of(events) == expected_answer(PERSONA, message)
    assert events[-1].type == "agent_done"
    assert source.attempts == 2
    sent = [body_of(request) for request in proxy.requests_matching()]
    assert len(sent) == 2
    otids = [body["messages"][0]["otid"] for body in sent]  # type: ignore[index]
    assert otids[0] == otids[1] == source.otid
    # The server joined the second request to the run the first one started.
    assert await user_turns(letta_stack, agent_id, message) == 1


async def test_a_revived_source_continues_the_run_after_the_checkpoint(
    letta_client: AsyncLetta, scripted_agent: CreateAgent
) -> None:
    agent_id = await scripted_agent(PERSONA)
    first = LettaSource(letta_client, agent_id, column_id="col-1", label="keeper", background=True)
    # The replica dies: its HTTP stream goes away, nobody cancels the run.
    read = await read_then_drop(first, 5)
    assert read[0].type == "agent_start"
    checkpoint = Checkpoint(
        agent_id="col-1",
        label="keeper",
        spec=json.loads(json.dumps(first.resume_spec())),  # what a hub stores: JSON
        run_id=str(read[0].data["run_id"]),
        cursor=int(read[-1].data["cursor"]),
        started=True,
    )

    async with LettaDirectory(letta_client) as directory:
        revived = await directory.revive(checkpoint)
        assert (revived.agent_id, revived.label) == ("col-1", "keeper")
        rest = await collect(revived.stream("not sent again"))

    assert rest[0].type != "agent_start"
    assert cursors(rest) == list(range(checkpoint.cursor + 1, checkpoint.cursor + 1 + len(rest)))  # type: ignore[operator]
    assert text_of(read) + text_of(rest) == expected_answer(PERSONA, SLOW)
    assert rest[-1].type == "agent_done"
    assert first.cancelled_runs == []


async def test_a_fresh_conversation_source_is_revived_from_a_spec_taken_before_it_streamed(
    letta_client: AsyncLetta, scripted_agent: CreateAgent
) -> None:
    agent_id = await scripted_agent(PERSONA)
    first = LettaSource(
        letta_client, agent_id, fresh_conversation=True, keep_conversation=False, background=True
    )
    spec = json.loads(json.dumps(first.resume_spec()))  # a hub registers it before streaming
    assert spec["conversation_id"] is None
    read = await read_then_drop(first, 3)
    conversation_id = first.conversation_id
    assert conversation_id is not None
    assert read[0].data["conversation_id"] == conversation_id
    checkpoint = Checkpoint(
        first.agent_id,
        first.label,
        spec,
        run_id=str(read[0].data["run_id"]),
        cursor=int(read[-1].data["cursor"]),
        started=True,
    )

    revived = LettaSource.revived(letta_client, checkpoint)
    rest = await collect(revived.stream(SLOW))

    assert text_of(read) + text_of(rest) == expected_answer(PERSONA, SLOW)
    assert revived.conversation_id == conversation_id
    # The revived source owns the conversation now: it is deleted once the run is over.
    with pytest.raises(NotFoundError):
        await letta_client.conversations.retrieve(conversation_id)


async def test_a_fan_out_of_background_sources_carries_the_cursors(
    letta_client: AsyncLetta, scripted_agent: CreateAgent
) -> None:
    personas = (PERSONA, "Oskar mends nets and speaks slowly.")
    ids = [await scripted_agent(p) for p in personas]
    message = "How was the sea today? [[words=15]]"
    sources = [LettaSource(letta_client, a, background=True) for a in ids]
    async with open_fanout(sources, message, timeout_s=60) as fanout:
        events = [event async for event in fanout]
    for agent_id, persona in zip(ids, personas, strict=True):
        own = [e for e in events if e.agent_id == agent_id]
        marks = [e.get("cursor") for e in own]
        assert all(isinstance(m, int) for m in marks)
        assert marks == sorted(set(marks))  # increasing; merged deltas keep the newest
        assert own[-1].type == "agent_done"
        text = "".join(str(e.get("delta")) for e in own if e.type == "content")
        assert text == expected_answer(persona, message)
