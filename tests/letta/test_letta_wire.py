"""LettaSource's own SSE parsing: same events as mapping the SDK's objects, no SDK objects.

``LettaSource`` reads the stream's SSE frames with httpx-sse and maps the wire JSON instead
of letting ``letta_client`` build a pydantic object per frame. These tests hold it to the
SDK's semantics, over real HTTP against the Letta protocol simulator: for every kind of
answer, the events equal what :class:`LettaMapper` makes of the SDK's own objects.
"""

from __future__ import annotations

import json
from typing import Any

import letta_client
import pytest
from letta_client import AsyncLetta

from orchestrator import SourceEvent
from orchestrator.letta._mapping import LettaMapper
from orchestrator.letta._source import LettaSource, create_letta_client
from orchestrator.testing._simulator import Simulator
from tests.testing._sim_fixtures import SimServer, sim_client, sim_server, simulator

__all__ = ["sim_client", "sim_server", "simulator"]  # fixtures used by the tests below

pytestmark = pytest.mark.anyio

MESSAGES = {
    "plain": "Name three rivers [[words=6]]",
    "reasoning_and_tool": "Look it up [[words=3 reasoning tool=conversation_search]]",
    "model_error_at_once": "Break [[fail=429@0]]",
    "model_error_mid_answer": "Break later [[words=8 fail=500@3]]",
}


_IDS = ("run_id", "message_id", "tool_call_id")


async def _via_sdk(client: AsyncLetta, agent_id: str, message: str) -> list[SourceEvent]:
    """The SDK's objects (and the SDK's exception), through the mapper."""
    mapper = LettaMapper()
    out: list[SourceEvent] = []
    try:
        stream = await client.agents.messages.create(
            agent_id=agent_id,
            messages=[{"role": "user", "content": message}],
            streaming=True,
            stream_tokens=True,
        )
        async for item in stream:
            out.extend(mapper.feed(item))
    except letta_client.APIError as exc:
        return out + mapper.fail(exc, agent_id=agent_id)
    return out + mapper.finish()


async def _via_source(client: AsyncLetta, agent_id: str, message: str) -> list[SourceEvent]:
    source = LettaSource(client, agent_id, connect_retries=0)
    return [sev async for sev in source.stream(message)]


def _comparable(events: list[SourceEvent]) -> list[Any]:
    # Ids differ between two requests (run, message, tool call); shape and text may not.
    out: list[Any] = []
    for sev in events:
        data = {k: v for k, v in sev.data.items() if k not in _IDS}
        out.append((sev.type, json.dumps(data, sort_keys=True)))
    return out


@pytest.mark.parametrize("name", sorted(MESSAGES))
async def test_source_events_equal_the_mapped_sdk_objects(
    name: str, sim_client: AsyncLetta, simulator: Simulator
) -> None:
    agent = next(iter(simulator.agents.values()))
    sdk = await _via_sdk(sim_client, agent.id, MESSAGES[name])
    ours = await _via_source(sim_client, agent.id, MESSAGES[name])
    assert _comparable(ours) == _comparable(sdk)
    assert ours[0].type == "agent_start"
    assert str(ours[0].data["run_id"]).startswith("run-")
    assert ours[-1].type in ("agent_done", "agent_error")
    calls = [sev.data["tool_call_id"] for sev in ours if sev.type == "tool_call"]
    results = [sev.data["tool_call_id"] for sev in ours if sev.type == "tool_result"]
    assert calls == results


async def test_the_stream_builds_no_sdk_object_per_frame(
    sim_server: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The point of parsing the frames ourselves: a pydantic object per token was about half
    # of the client's CPU per event (bench/README.md). Building one now fails the test.
    built: list[object] = []
    real = letta_client.AsyncLetta._process_response_data

    def counting(self: AsyncLetta, **kwargs: Any) -> Any:
        built.append(kwargs.get("data"))
        return real(self, **kwargs)

    agent = next(iter(sim_server.sim.agents.values()))
    async with AsyncLetta(base_url=sim_server.base_url, max_retries=0) as client:
        monkeypatch.setattr(letta_client.AsyncLetta, "_process_response_data", counting)
        events = [sev async for sev in LettaSource(client, agent.id).stream("Hi [[words=20]]")]
    assert sum(sev.type == "content" for sev in events) == 21
    assert built == []


async def test_run_ids_are_recorded_once_per_stream(
    sim_client: AsyncLetta, simulator: Simulator
) -> None:
    agent = next(iter(simulator.agents.values()))
    source = LettaSource(sim_client, agent.id)
    for _ in range(2):
        events = [sev async for sev in source.stream("Again [[words=4]]")]
        assert events[-1].type == "agent_done"
    assert len(source.run_ids) == 2
    assert len(set(source.run_ids)) == 2
    assert source.run_id == source.run_ids[-1]


def test_an_error_frame_ends_the_run_with_the_servers_error() -> None:
    mapper = LettaMapper()
    mapper.feed({"message_type": "ping", "run_id": "run-1", "id": "p", "date": "x"})
    mapper.feed({"message_type": "stop_reason", "stop_reason": "llm_api_error"})
    body = {
        "message_type": "error_message",
        "run_id": "run-1",
        "error_type": "llm_rate_limit",
        "message": "Rate limited",
        "detail": "429",
    }
    (terminal,) = mapper.error_frame(json.dumps(body))
    assert terminal.data == {
        "code": "llm_rate_limited",
        "message": "Rate limited (429)",
        "retryable": True,
    }
    assert mapper.ended


def test_an_error_frame_that_is_not_json_is_a_retryable_server_error() -> None:
    mapper = LettaMapper()
    (terminal,) = mapper.error_frame("upstream exploded")
    assert terminal.data["code"] == "server_error"
    assert terminal.data["retryable"] is True
    assert "upstream exploded" in terminal.data["message"]
    assert not mapper.ended  # nothing says the run is over: cancel it


def test_wire_dicts_and_sdk_objects_map_alike() -> None:
    frames: list[dict[str, Any]] = [
        {"message_type": "ping", "id": "p-1", "date": "2025-01-01T00:00:00Z", "run_id": "r"},
        {"message_type": "assistant_message", "id": "m", "otid": "o", "content": "Hi"},
        {"message_type": "assistant_message", "id": "m", "otid": "o", "content": [{"text": "!"}]},
        {"message_type": "stop_reason", "stop_reason": "end_turn"},
    ]
    mapper = LettaMapper()
    events = [sev for frame in frames for sev in mapper.feed(frame)] + mapper.finish()
    assert events == [
        SourceEvent("agent_start", {"run_id": "r"}),
        SourceEvent.content("Hi", "o"),
        SourceEvent.content("!", "o"),
        SourceEvent("agent_done", {"stop_reason": "end_turn"}),
    ]
    assert mapper.content_chars == 3


async def test_create_letta_client_pool_takes_the_configured_limit() -> None:
    from orchestrator.config._config import LettaConnection

    fields = LettaConnection.model_fields
    if "max_connections" not in fields:
        pytest.fail("LettaConnection has no max_connections")
    client = create_letta_client(LettaConnection(base_url="http://127.0.0.1:9", max_connections=7))
    try:
        pool = client._client._transport._pool  # type: ignore[attr-defined]
        assert pool._max_connections == 7
    finally:
        await client.close()
    default = create_letta_client(LettaConnection(base_url="http://127.0.0.1:9"))
    try:
        pool = default._client._transport._pool  # type: ignore[attr-defined]
        assert pool._max_connections >= 1000  # a 1000-agent fan-out is not queued by default
    finally:
        await default.close()


async def test_sources_of_one_client_share_one_retryless_copy() -> None:
    # A copy per source would run the SDK's platform detection (a worker-thread hop) once per
    # source on its first request: a thousand of them when a big fan-out starts.
    async with AsyncLetta(base_url="http://127.0.0.1:9", max_retries=2) as client:
        first, second = LettaSource(client, "agent-1"), LettaSource(client, "agent-2")
        assert first._requests is second._requests
        assert first._requests is not client
        assert first._requests.max_retries == 0
    async with AsyncLetta(base_url="http://127.0.0.1:9", max_retries=0) as quiet:
        assert LettaSource(quiet, "agent-1")._requests is quiet
