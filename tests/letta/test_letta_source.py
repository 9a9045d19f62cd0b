"""LettaSource against the real Letta server of the local stack (scripted model behind it)."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence

import pytest
from letta_client import AsyncLetta

from orchestrator import Event, LettaSource, Source, SourceEvent, open_fanout
from orchestrator.testing._modelserver import expected_answer, strip_directives
from tests._wait import wait_until
from tests.letta.conftest import CreateAgent

pytestmark = pytest.mark.letta

PERSONAS = (
    "Optimist. You look for what could go right.",
    "Skeptic. You question every assumption.",
    "Historian. You answer with precedent.",
)

# A Letta agent with an unknown id (well-formed, so the server answers 404, not 422).
UNKNOWN_ID = "agent-00000000-0000-4000-8000-000000000000"


class WithDirectives:
    """A source that sends its agent the prompt with its own ``[[ ... ]]`` block.

    The prompt is shared by the fan-out; this is how one agent's scripted model is told to
    fail while the others answer normally.
    """

    def __init__(self, source: LettaSource, directives: str) -> None:
        self.inner = source
        self.directives = directives

    @property
    def agent_id(self) -> str:
        return self.inner.agent_id

    @property
    def label(self) -> str:
        return self.inner.label

    def message_for(self, prompt: str) -> str:
        return f"{strip_directives(prompt)} [[{self.directives}]]"

    def stream(self, message: str) -> AsyncIterator[SourceEvent]:
        return self.inner.stream(self.message_for(message))

    async def cancel(self) -> None:
        await self.inner.cancel()


def texts(events: Sequence[Event]) -> dict[str, str]:
    out: dict[str, str] = defaultdict(str)
    for event in events:
        if event.type == "content" and event.agent_id is not None:
            out[event.agent_id] += event.delta
    return dict(out)


def terminals(events: Sequence[Event]) -> dict[str, Event]:
    found: dict[str, Event] = {}
    for event in events:
        if event.is_terminal and event.agent_id is not None:
            assert event.agent_id not in found, f"two terminal events for {event.agent_id}"
            found[event.agent_id] = event
    return found


def run_ids(events: Sequence[Event]) -> dict[str, str]:
    return {
        e.agent_id: e.get("run_id")
        for e in events
        if e.type == "agent_start" and e.agent_id is not None and e.get("run_id")
    }


async def wait_run_status(client: AsyncLetta, run_id: str, wanted: str, within_s: float) -> str:
    """Poll the run until it has status ``wanted``; return the last status seen."""
    seen: list[str] = []

    async def reached() -> bool:
        seen.append(str((await client.runs.retrieve(run_id)).status))
        return seen[-1] == wanted

    with contextlib.suppress(AssertionError):
        await wait_until(
            reached, f"run {run_id} to be {wanted}", timeout_s=within_s, interval_s=0.1
        )
    return seen[-1]


async def make_agents(scripted_agent: CreateAgent, n: int = 3, **kw: str) -> list[str]:
    return [await scripted_agent(PERSONAS[k], **kw) for k in range(n)]


async def test_three_agents_stream_concurrently_with_their_exact_answers(
    letta_client: AsyncLetta, scripted_agent: CreateAgent
) -> None:
    ids = await make_agents(scripted_agent)
    # Two seconds of tokens each: longer than the spread of the server's time to first token
    # across three runs on a slow 2-core machine (0.4 s streams let one agent finish before
    # another had started, which says nothing about the fan-out).
    prompt = "What should we build next? [[words=30 tps=15]]"
    sources = [LettaSource(letta_client, a, label=f"p{k}") for k, a in enumerate(ids)]
    async with open_fanout(sources, prompt) as fanout:
        events = [event async for event in fanout]

    ends = terminals(events)
    assert {a: ends[a].type for a in ids} == dict.fromkeys(ids, "agent_done"), ends
    assert all(ends[a].get("stop_reason") == "end_turn" for a in ids)
    got = texts(events)
    for agent_id, persona in zip(ids, PERSONAS, strict=True):
        assert got[agent_id] == expected_answer(persona, prompt)
    # Concurrent, not one after the other: every agent started answering before any ended.
    first = [min(e.index for e in events if e.agent_id == a and e.type == "content") for a in ids]
    last = [max(e.index for e in events if e.agent_id == a and e.type == "content") for a in ids]
    assert max(first) < min(last)
    # Deltas of one message share its id; the server's run id is announced first.
    for agent_id in ids:
        message_ids = {
            e.message_id for e in events if e.agent_id == agent_id and e.type == "content"
        }
        assert len(message_ids) == 1
        assert None not in message_ids
        assert run_ids(events)[agent_id].startswith("run-")
        usage = [e for e in events if e.agent_id == agent_id and e.type == "usage"]
        assert usage
        assert usage[0].get("completion_tokens") > 0


async def test_cancelling_one_agent_cancels_its_run_on_the_server(
    letta_client: AsyncLetta, scripted_agent: CreateAgent
) -> None:
    ids = await make_agents(scripted_agent)
    victim = ids[1]
    prompt = "Tell a long story [[words=40 tps=20]]"
    sources = [LettaSource(letta_client, a) for a in ids]
    events: list[Event] = []
    async with open_fanout(sources, prompt) as fanout:
        async for event in fanout:
            events.append(event)
            if event.agent_id == victim and event.type == "content":
                fanout.cancel(victim)

    ends = terminals(events)
    assert ends[victim].type == "agent_cancelled"
    assert ends[victim].get("reason") == "user"
    for agent_id, persona in ((ids[0], PERSONAS[0]), (ids[2], PERSONAS[2])):
        assert ends[agent_id].type == "agent_done"
        assert texts(events)[agent_id] == expected_answer(persona, prompt)
    victim_run = run_ids(events)[victim]
    assert sources[1].cancelled_runs == [victim_run]
    assert await wait_run_status(letta_client, victim_run, "cancelled", 10) == "cancelled"
    # The victim stopped early: its text is a strict prefix of the full answer.
    partial = texts(events)[victim]
    assert expected_answer(PERSONAS[1], prompt).startswith(partial)
    assert len(partial) < len(expected_answer(PERSONAS[1], prompt))


async def test_leaving_the_fanout_early_cancels_every_run_on_the_server(
    letta_client: AsyncLetta, scripted_agent: CreateAgent
) -> None:
    ids = await make_agents(scripted_agent)
    prompt = "Explain everything [[words=60 tps=20]]"
    sources = [LettaSource(letta_client, a) for a in ids]
    events: list[Event] = []
    async with open_fanout(sources, prompt) as fanout:
        async for event in fanout:
            events.append(event)
            talking = {e.agent_id for e in events if e.type == "content"}
            if talking == set(ids):
                break

    started = run_ids(events)
    assert set(started) == set(ids)
    for source in sources:
        assert source.cancelled_runs == [started[source.agent_id]]
    for agent_id in ids:
        status = await wait_run_status(letta_client, started[agent_id], "cancelled", 10)
        assert status == "cancelled", f"run of {agent_id} is {status}"


async def test_unknown_agent_id_ends_with_agent_not_found_others_finish(
    letta_client: AsyncLetta, scripted_agent: CreateAgent
) -> None:
    ids = await make_agents(scripted_agent, 2)
    prompt = "Hello there [[words=6]]"
    sources = [LettaSource(letta_client, a) for a in (ids[0], UNKNOWN_ID, ids[1])]
    async with open_fanout(sources, prompt) as fanout:
        events = [event async for event in fanout]

    ends = terminals(events)
    assert ends[UNKNOWN_ID].type == "agent_error"
    assert ends[UNKNOWN_ID].get("code") == "agent_not_found"
    assert ends[UNKNOWN_ID].get("retryable") is False
    assert sources[1].cancelled_runs == []  # nothing ran, nothing to cancel
    for agent_id, persona in zip(ids, PERSONAS, strict=False):
        assert ends[agent_id].type == "agent_done"
        assert texts(events)[agent_id] == expected_answer(persona, prompt)


@pytest.mark.parametrize("status", [429, 500])
async def test_model_error_mid_stream_ends_that_agent_with_an_error(
    letta_client: AsyncLetta, scripted_agent: CreateAgent, status: int
) -> None:
    ids = await make_agents(scripted_agent)
    prompt = "Summarise the day [[words=8]]"
    failing = WithDirectives(LettaSource(letta_client, ids[1]), f"words=8 fail={status}@3")
    sources: list[Source] = [
        LettaSource(letta_client, ids[0]),
        failing,
        LettaSource(letta_client, ids[2]),
    ]
    async with open_fanout(sources, prompt) as fanout:
        events = [event async for event in fanout]

    ends = terminals(events)
    error = ends[ids[1]]
    assert error.type == "agent_error"
    assert error.get("code") in {"llm_error", "llm_rate_limited"}
    assert error.get("retryable") is True
    assert str(status) in error.get("message")
    # The three tokens before the failure arrived, and nothing after it.
    full = expected_answer(PERSONAS[1], failing.message_for(prompt))
    assert texts(events)[ids[1]] == " ".join(full.split(" ")[:3])
    for agent_id, persona in ((ids[0], PERSONAS[0]), (ids[2], PERSONAS[2])):
        assert ends[agent_id].type == "agent_done"
        assert texts(events)[agent_id] == expected_answer(persona, prompt)


async def test_a_tool_call_shows_as_tool_call_then_tool_result(
    letta_client: AsyncLetta, scripted_agent: CreateAgent
) -> None:
    (agent_id,) = await make_agents(scripted_agent, 1)
    prompt = "Look it up [[tool=conversation_search words=5]]"
    async with open_fanout([LettaSource(letta_client, agent_id)], prompt) as fanout:
        events = [event async for event in fanout]

    kinds = [e.type for e in events if e.agent_id == agent_id]
    assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("content")
    call = next(e for e in events if e.type == "tool_call")
    result = next(e for e in events if e.type == "tool_result")
    assert call.get("name") == "conversation_search"
    assert isinstance(call.get("arguments"), dict)
    assert call.get("tool_call_id")
    assert result.get("tool_call_id") == call.get("tool_call_id")
    assert result.get("status") == "success"
    assert isinstance(result.get("result"), str)
    assert terminals(events)[agent_id].type == "agent_done"
    assert texts(events)[agent_id] == expected_answer(PERSONAS[0], prompt)
