"""The Letta mapping: SDK stream objects and SDK errors in, protocol source events out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import letta_client
import pytest
from letta_client.types.agents.assistant_message import AssistantMessage
from letta_client.types.agents.letta_assistant_message_content_union import (
    LettaAssistantMessageContentUnion as Part,
)
from letta_client.types.agents.letta_streaming_response import (
    LettaErrorMessage,
    LettaPing,
    LettaStopReason,
    LettaUsageStatistics,
)
from letta_client.types.agents.reasoning_message import ReasoningMessage
from letta_client.types.agents.tool_call import ToolCall
from letta_client.types.agents.tool_call_delta import ToolCallDelta
from letta_client.types.agents.tool_call_message import ToolCallMessage
from letta_client.types.tool_return_message import ToolReturnMessage

from orchestrator import SourceEvent
from orchestrator.letta._mapping import LettaMapper, classify_error

NOW = datetime(2025, 1, 1, tzinfo=UTC)
RUN = "run-1"
REQUEST = httpx.Request("POST", "http://letta.test/v1/agents/agent-1/messages")


def ping() -> LettaPing:
    return LettaPing(id="ping-1", date=NOW, message_type="ping", run_id=RUN)


def content(delta: str, otid: str = "m-1") -> AssistantMessage:
    return AssistantMessage(
        id="message-1",
        date=NOW,
        content=delta,
        otid=otid,
        run_id=RUN,
        message_type="assistant_message",
    )


def reasoning(delta: str) -> ReasoningMessage:
    return ReasoningMessage(
        id="message-1",
        date=NOW,
        reasoning=delta,
        otid="r-1",
        run_id=RUN,
        message_type="reasoning_message",
    )


def stop(reason: str) -> LettaStopReason:
    return LettaStopReason(stop_reason=reason, message_type="stop_reason")  # type: ignore[arg-type]


def feed_all(mapper: LettaMapper, items: list[Any]) -> list[SourceEvent]:
    out: list[SourceEvent] = []
    for item in items:
        out.extend(mapper.feed(item))
    return out


def status_error(status: int, body: object) -> letta_client.APIStatusError:
    response = httpx.Response(status, request=REQUEST, json=body)
    cls = {
        404: letta_client.NotFoundError,
        400: letta_client.BadRequestError,
        422: letta_client.UnprocessableEntityError,
        429: letta_client.RateLimitError,
        409: letta_client.ConflictError,
    }.get(
        status, letta_client.InternalServerError if status >= 500 else letta_client.APIStatusError
    )
    return cls(f"Error code: {status}", response=response, body=body)


def test_a_plain_answer_maps_to_start_deltas_usage_and_done() -> None:
    mapper = LettaMapper()
    usage = LettaUsageStatistics(
        message_type="usage_statistics",
        prompt_tokens=10,
        completion_tokens=3,
        total_tokens=13,
        step_count=1,
    )
    events = feed_all(
        mapper,
        [ping(), reasoning("Thinking"), content("Hel"), content("lo"), stop("end_turn"), usage],
    )
    events += mapper.finish()
    assert events == [
        SourceEvent("agent_start", {"run_id": RUN}),
        SourceEvent.reasoning("Thinking", "r-1"),
        SourceEvent.content("Hel", "m-1"),
        SourceEvent.content("lo", "m-1"),
        SourceEvent(
            "usage",
            {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13, "step_count": 1},
        ),
        SourceEvent("agent_done", {"stop_reason": "end_turn"}),
    ]
    assert mapper.run_id == RUN
    assert mapper.ended


def test_deltas_are_joined_by_otid_not_by_message_id() -> None:
    # Letta gives reasoning and answer of one step the same id but different otids.
    mapper = LettaMapper()
    events = feed_all(mapper, [ping(), reasoning("x"), content("a", "m-1"), content("b", "m-2")])
    assert [e.data["message_id"] for e in events[1:]] == ["r-1", "m-1", "m-2"]


def test_content_given_as_parts_is_joined() -> None:
    item = AssistantMessage(
        id="message-1",
        date=NOW,
        content=[Part(text="Hi ", type="text"), Part(text="there", type="text")],
        message_type="assistant_message",
    )
    assert LettaMapper().feed(item) == [SourceEvent.content("Hi there", "message-1")]


def test_streamed_tool_call_deltas_become_one_tool_call_before_its_result() -> None:
    mapper = LettaMapper()
    parts = [
        ToolCallDelta(name="web_search", tool_call_id="call-1", arguments='{"que'),
        ToolCallDelta(arguments='ry": "x"}'),
    ]
    items: list[Any] = [ping()]
    items += [
        ToolCallMessage(id="message-2", date=NOW, tool_call=part, message_type="tool_call_message")
        for part in parts
    ]
    items.append(
        ToolReturnMessage(
            id="message-3",
            date=NOW,
            status="success",
            tool_call_id="call-1",
            tool_return="42 results",
            message_type="tool_return_message",
        )
    )
    events = feed_all(mapper, items)
    assert events[1:] == [
        SourceEvent(
            "tool_call",
            {"name": "web_search", "arguments": {"query": "x"}, "tool_call_id": "call-1"},
        ),
        SourceEvent(
            "tool_result", {"tool_call_id": "call-1", "status": "success", "result": "42 results"}
        ),
    ]


def test_a_tool_call_is_emitted_before_the_stop_and_keeps_non_json_arguments() -> None:
    mapper = LettaMapper()
    call = ToolCall(name="ask_human", tool_call_id="call-9", arguments="not json")
    message = ToolCallMessage(id="m", date=NOW, tool_call=call, message_type="tool_call_message")
    events = feed_all(mapper, [ping(), message, stop("requires_approval")])
    assert events[1:] + mapper.finish() == [
        SourceEvent(
            "tool_call", {"name": "ask_human", "arguments": "not json", "tool_call_id": "call-9"}
        ),
        SourceEvent("agent_done", {"stop_reason": "requires_approval"}),
    ]


@pytest.mark.parametrize(
    ("reason", "code", "retryable"),
    [
        ("llm_api_error", "llm_error", True),
        ("error", "server_error", True),
        ("invalid_tool_call", "tool_error", False),
        ("cancelled", "cancelled_on_server", False),
    ],
)
def test_error_stop_reasons_end_with_agent_error(reason: str, code: str, retryable: bool) -> None:
    mapper = LettaMapper()
    feed_all(mapper, [ping(), content("partial"), stop(reason)])
    (terminal,) = mapper.finish()
    assert terminal.type == "agent_error"
    assert (terminal.data["code"], terminal.data["retryable"]) == (code, retryable)


def test_a_stream_without_stop_reason_is_incomplete() -> None:
    mapper = LettaMapper()
    feed_all(mapper, [ping(), content("cut")])
    (terminal,) = mapper.finish()
    assert terminal.data["code"] == "stream_incomplete"
    assert not mapper.ended  # the server never said the run is over: cancel it


def test_error_message_item_wins_over_the_stop_reason() -> None:
    mapper = LettaMapper()
    error = LettaErrorMessage(
        error_type="llm_rate_limit",
        message="Rate limit exceeded",
        detail="429 from provider",
        message_type="error_message",
        run_id=RUN,
    )
    feed_all(mapper, [ping(), stop("llm_api_error"), error])
    assert mapper.finish() == [
        SourceEvent(
            "agent_error",
            {
                "code": "llm_rate_limited",
                "message": "Rate limit exceeded (429 from provider)",
                "retryable": True,
            },
        )
    ]


def test_mid_stream_error_event_after_llm_api_error_is_an_llm_error() -> None:
    # What letta 0.16.8 sends when the model fails mid-answer: the stop reason, then an SSE
    # ``event: error`` that the SDK raises as APIStatusError on the 200 response.
    mapper = LettaMapper()
    feed_all(mapper, [ping(), content("Two words"), stop("error"), stop("llm_api_error")])
    body = {
        "message_type": "error_message",
        "run_id": RUN,
        "error_type": "internal_error",
        "message": "An error occurred during agent execution.",
        "detail": "OpenAI API error: scripted failure 500",
    }
    (terminal,) = mapper.fail(status_error(200, body))
    assert terminal.data["code"] == "llm_error"
    assert terminal.data["retryable"] is True
    assert "scripted failure 500" in terminal.data["message"]
    assert mapper.ended


@pytest.mark.parametrize(
    ("exc", "code", "retryable"),
    [
        (status_error(404, {"detail": "Agent not found"}), "agent_not_found", False),
        (status_error(400, {"detail": "bad"}), "bad_request", False),
        (status_error(422, {"detail": [{"msg": "x"}]}), "bad_request", False),
        (status_error(409, {"detail": "busy"}), "conflict", True),
        (status_error(429, {"detail": "slow down"}), "rate_limited", True),
        (status_error(500, {"detail": "boom"}), "server_error", True),
        (status_error(503, {"detail": "down"}), "unavailable", True),
        (letta_client.APIConnectionError(request=REQUEST), "unavailable", True),
        (letta_client.APITimeoutError(request=REQUEST), "timeout", True),
        (httpx.RemoteProtocolError("peer closed", request=REQUEST), "unavailable", True),
        (httpx.ReadError("reset", request=REQUEST), "unavailable", True),
        (httpx.ReadTimeout("slow", request=REQUEST), "timeout", True),
        (RuntimeError("bug"), "source_error", False),
    ],
)
def test_classify_error_gives_stable_codes(exc: Exception, code: str, retryable: bool) -> None:
    error = classify_error(exc, agent_id="agent-1")
    assert (error.code, error.retryable) == (code, retryable)
    assert error.message


def test_not_found_and_unreachable_messages_say_what_and_where() -> None:
    assert (
        "'agent-1' not found"
        in classify_error(status_error(404, {"detail": "nope"}), agent_id="agent-1").message
    )
    exc = letta_client.APIConnectionError(request=REQUEST)
    assert "http://letta.test/v1/agents/agent-1/messages" in classify_error(exc).message


def test_a_tool_call_pending_when_the_stream_breaks_comes_before_the_error() -> None:
    mapper = LettaMapper()
    call = ToolCall(name="lookup", tool_call_id="call-3", arguments="{}")
    feed_all(
        mapper,
        [
            ping(),
            ToolCallMessage(id="m", date=NOW, tool_call=call, message_type="tool_call_message"),
        ],
    )
    events = mapper.fail(httpx.ReadError("reset", request=REQUEST), agent_id="agent-1")
    assert [e.type for e in events] == ["tool_call", "agent_error"]
    assert events[1].data["code"] == "unavailable"
    assert not mapper.ended  # a broken connection does not end the run on the server
