"""The Vercel AI SDK's UI message stream, one agent (column) per stream: one ``useChat`` each.

The AI SDK's stream (npm ``ai``, ``DefaultChatTransport``, ``readUIMessageStream``) is SSE of
``data: <part JSON>`` ending with ``data: [DONE]``, with the header
``x-vercel-ai-ui-message-stream: v1``; a stream is one assistant message, so a fan-out is
served one column at a time:

- ``GET /v1/fanouts/{id}/agents/{agent_id}/ui-message-stream``: one column of a running or
  finished fan-out, replayed from the retained log and then live. Reading it again is the
  resume (the AI SDK treats a resumed stream as a replay); leaving it never cancels.
- ``POST /v1/ui-message-stream``: what ``useChat`` sends (``{id, messages}``) plus
  ``agents`` (or ``preset``), ``options`` and ``column`` (the agent to stream: a position,
  a column id or a label). It starts the fan-out and answers with that column; the others
  run in the same fan-out for their own GET streams. The chat ``id`` is a session (with a
  Letta server), as AG-UI's ``threadId`` is. ``GET /v1/ui-message-stream/{id}/stream``
  resumes the latest stream of that chat (``204`` when none is running).

The parts are plain JSON written with orjson from the typed dicts below (there is no
official Python package). Mapping of one column's events: ``start`` (``messageMetadata``:
the fan-out's id, URLs and columns), ``start-step``; ``reasoning-*``; ``text-*`` per
message; ``tool-input-available`` / ``tool-output-available`` (dynamic tools the server
executed); usage as ``message-metadata``; then ``finish-step`` and ``finish`` (done), an
``error`` part and ``finish`` with ``finishReason: "error"`` (error), or ``abort``
(cancelled); ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, TypedDict

from annotated_types import Ge
from fastapi import APIRouter, Body, Request
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from orchestrator import Event, FanOutExpiredError, HubFanOut

from ._errors import ApiError, error_responses
from ._frontends import (
    AGENTS_OR_PRESET,
    OPEN_NAMES,
    SSE_MESSAGE,
    ConversationId,
    FanOutStart,
    FreeJson,
    check_strings,
    clean,
    protocol_stream,
    resolve_agents,
    start_fanout,
    text_of_parts,
)
from ._json import dumps
from ._models import Name, OptionsSpec, Text, not_bool
from ._sessions import MemberRequest
from ._state import ApiState, State, find

__all__ = ["UiMessageTranslator", "router"]

router = APIRouter(tags=["frontends"], responses=error_responses(401))

HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
DONE = b"data: [DONE]\n\n"

FinishReason = Literal["stop", "length", "content-filter", "tool-calls", "error", "other"]


# -- the parts (the subset of the AI SDK's UIMessageChunk that an agent's stream uses) ------


class StartPart(TypedDict):
    type: Literal["start"]
    messageId: str
    messageMetadata: dict[str, Any]


class StepPart(TypedDict):
    type: Literal["start-step", "finish-step"]


class SpanPart(TypedDict):
    type: Literal["text-start", "text-end", "reasoning-start", "reasoning-end"]
    id: str


class DeltaPart(TypedDict):
    type: Literal["text-delta", "reasoning-delta"]
    id: str
    delta: str


class ToolInputPart(TypedDict):
    type: Literal["tool-input-available"]
    toolCallId: str
    toolName: str
    input: Any
    providerExecuted: bool
    dynamic: bool


class ToolOutputPart(TypedDict):
    type: Literal["tool-output-available"]
    toolCallId: str
    output: Any
    providerExecuted: bool
    dynamic: bool


class ToolErrorPart(TypedDict):
    type: Literal["tool-output-error"]
    toolCallId: str
    errorText: str
    providerExecuted: bool
    dynamic: bool


class MetadataPart(TypedDict):
    type: Literal["message-metadata"]
    messageMetadata: dict[str, Any]


class FinishPart(TypedDict):
    type: Literal["finish"]
    finishReason: FinishReason
    messageMetadata: dict[str, Any]


class ErrorPart(TypedDict):
    type: Literal["error"]
    errorText: str


class AbortPart(TypedDict):
    type: Literal["abort"]
    reason: str


Part = (
    StartPart
    | StepPart
    | SpanPart
    | DeltaPart
    | ToolInputPart
    | ToolOutputPart
    | ToolErrorPart
    | MetadataPart
    | FinishPart
    | ErrorPart
    | AbortPart
)

# Letta's stop reasons as the AI SDK's finish reasons.
_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "max_steps": "length",
    "max_tokens_exceeded": "length",
    "tool_rule": "tool-calls",
}


def encode(part: Part) -> bytes:
    """One SSE message of ``part`` (strict JSON; lone surrogates become U+FFFD)."""
    return b"data: " + dumps(part).encode() + b"\n\n"


class UiMessageTranslator:
    """Turns one column's events into UI message stream parts (one assistant message)."""

    def __init__(self, fanout_id: str, agent_id: str) -> None:
        self.fanout_id = fanout_id
        self.agent_id = agent_id
        self.message_id = f"{fanout_id}.{agent_id}"
        self.done = False
        self._open: tuple[str, str] | None = None  # ("text" | "reasoning", part id)
        self._tools: set[str] = set()

    def opening(self, metadata: dict[str, Any]) -> list[Part]:
        """The stream's first parts."""
        start: StartPart = {
            "type": "start",
            "messageId": self.message_id,
            "messageMetadata": metadata,
        }
        return [start, {"type": "start-step"}]

    def translate(self, event: Event) -> list[Part]:
        """The parts for ``event`` (events of other columns give none)."""
        if event.agent_id != self.agent_id or self.done:
            return []
        kind = event.type
        if kind in ("content", "reasoning"):
            delta = clean(event.delta)
            span = "text" if kind == "content" else "reasoning"
            part_id = f"{span}-{event.message_id or event.seq}"
            out = [] if self._open == (span, part_id) else self._close()
            if not delta:
                return out
            if self._open is None:
                self._open = (span, part_id)
                out.append(self._span(f"{span}-start", part_id))
            out.append(self._delta(f"{span}-delta", part_id, delta))
            return out
        if kind == "tool_call":
            call_id = str(event.get("tool_call_id") or f"call-{event.seq}")
            self._tools.add(call_id)
            tool: ToolInputPart = {
                "type": "tool-input-available",
                "toolCallId": call_id,
                "toolName": str(event.get("name") or "tool"),
                "input": event.get("arguments"),
                "providerExecuted": True,
                "dynamic": True,
            }
            return [*self._close(), tool]
        if kind == "tool_result":
            return self._tool_result(event)
        if kind == "usage":
            usage = {k: event.get(k) for k in _USAGE}
            return [{"type": "message-metadata", "messageMetadata": {"usage": usage}}]
        if event.is_terminal:
            self.done = True
            return self._terminal(event)
        return []

    def _tool_result(self, event: Event) -> list[Part]:
        call_id = str(event.get("tool_call_id") or "")
        if call_id not in self._tools:
            return []  # the AI SDK refuses an output without its call
        result = event.get("result")
        if event.get("status") == "error":
            failed: ToolErrorPart = {
                "type": "tool-output-error",
                "toolCallId": call_id,
                "errorText": result if isinstance(result, str) else dumps(result),
                "providerExecuted": True,
                "dynamic": True,
            }
            return [failed]
        output: ToolOutputPart = {
            "type": "tool-output-available",
            "toolCallId": call_id,
            "output": result,
            "providerExecuted": True,
            "dynamic": True,
        }
        return [output]

    def _terminal(self, event: Event) -> list[Part]:
        out: list[Part] = [*self._close(), {"type": "finish-step"}]
        metadata = {k: v for k, v in event.to_dict().items() if k not in _ENVELOPE}
        metadata["state"] = event.type.removeprefix("agent_")
        if event.type == "agent_done":
            reason = _FINISH.get(str(event.get("stop_reason")), "other")
            out.append({"type": "finish", "finishReason": reason, "messageMetadata": metadata})
        elif event.type == "agent_error":
            text = f"{event.get('code') or 'error'}: {event.get('message') or ''}".rstrip(": ")
            out.append({"type": "error", "errorText": text})
            out.append({"type": "finish", "finishReason": "error", "messageMetadata": metadata})
        else:
            out.append({"type": "abort", "reason": str(event.get("reason") or "user")})
        return out

    def _close(self) -> list[Part]:
        if self._open is None:
            return []
        span, part_id = self._open
        self._open = None
        return [self._span(f"{span}-end", part_id)]

    @staticmethod
    def _span(kind: str, part_id: str) -> SpanPart:
        return {"type": kind, "id": part_id}  # type: ignore[typeddict-item]

    @staticmethod
    def _delta(kind: str, part_id: str, delta: str) -> DeltaPart:
        return {"type": kind, "id": part_id, "delta": delta}  # type: ignore[typeddict-item]


_USAGE = ("prompt_tokens", "completion_tokens", "total_tokens", "step_count")
_ENVELOPE = frozenset({"v", "type", "fanout_id", "agent_id", "label", "seq", "index", "t"})


# -- requests -----------------------------------------------------------------------------------

_CAMEL = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class ChatUserMessage(BaseModel):
    """A user message of ``useChat``: its text parts are the prompt."""

    model_config = ConfigDict(**_CAMEL, json_schema_extra=OPEN_NAMES)
    __pydantic_extra__: dict[str, FreeJson] = Field(init=False)

    id: Annotated[Name, Field(min_length=1)]
    role: Literal["user"]
    # At least one part should be text: the endpoint checks it (``no_user_text``), since
    # a JSON Schema ``contains`` here defeats schema-driven generators.
    parts: Annotated[list[dict[Text, FreeJson]], Field(min_length=1)]

    def text(self) -> str:
        """The text parts, joined."""
        return text_of_parts(self.parts)


class ChatOtherMessage(BaseModel):
    """An earlier assistant or system message (sent back by ``useChat``, not used)."""

    model_config = ConfigDict(**_CAMEL, json_schema_extra=OPEN_NAMES)
    __pydantic_extra__: dict[str, FreeJson] = Field(init=False)

    id: Annotated[Name, Field(min_length=1)]
    role: Literal["assistant", "system"]


class ChatRequest(BaseModel):
    """Body of ``POST /v1/ui-message-stream``: ``useChat``'s request plus the agents."""

    model_config = ConfigDict(
        **_CAMEL,
        json_schema_extra={
            **OPEN_NAMES,
            "anyOf": AGENTS_OR_PRESET,
            "examples": [
                {
                    "id": "chat-1",
                    "messages": [
                        {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}
                    ],
                    "agents": [{"name": "optimist"}, {"name": "critic"}],
                    "column": 0,
                }
            ],
        },
    )

    __pydantic_extra__: dict[str, FreeJson] = Field(init=False)

    id: ConversationId
    messages: Annotated[
        list[Annotated[ChatUserMessage | ChatOtherMessage, Field(discriminator="role")]],
        Field(min_length=1),
    ]
    trigger: Literal["submit-message", "regenerate-message"] | None = None
    message_id: Name | None = None
    agents: list[MemberRequest] | None = Field(default=None, min_length=1)
    preset: Annotated[Name, Field(min_length=1)] | None = None
    options: OptionsSpec | None = None
    #: The agent this stream shows: its position in ``agents``, its column id or its label.
    column: (
        Annotated[int, Ge(0), BeforeValidator(not_bool)] | Annotated[Name, Field(min_length=1)]
    ) = 0

    @model_validator(mode="before")
    @classmethod
    def _only_text(cls, data: Any) -> Any:
        check_strings(data)
        return data

    @model_validator(mode="after")
    def _complete(self) -> ChatRequest:
        if not self.agents and self.preset is None:
            raise ValueError("the body needs 'agents' (at least one) or 'preset'")
        return self

    def prompt(self) -> str:
        """The last user message's text."""
        users = [m for m in self.messages if isinstance(m, ChatUserMessage)]
        return users[-1].text() if users else ""


# -- endpoints ----------------------------------------------------------------------------------

_STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "The AI SDK's UI message stream: `data: <part JSON>` per part, ending with "
            "`data: [DONE]`; header `x-vercel-ai-ui-message-stream: v1`."
        ),
        "content": {"text/event-stream": {"schema": SSE_MESSAGE}},
    }
}


@router.get(
    "/v1/fanouts/{fanout_id}/agents/{agent_id}/ui-message-stream",
    response_class=Response,
    responses={**_STREAM_RESPONSE, **error_responses(404, 410, 503)},
)
async def agent_ui_message_stream(fanout_id: str, agent_id: str, state: State) -> Response:
    """One agent of a fan-out as the AI SDK's UI message stream (for `useChat`).

    Replays the agent's events from the retained log, then follows it live until the agent
    ends. Read it again to resume. `404` unknown fan-out or agent, `410` expired.
    """
    entry = await find(state, fanout_id)
    return _column_response(state, FanOutStart(entry, None), _column(entry, agent_id), False)


@router.post(
    "/v1/ui-message-stream",
    response_class=Response,
    responses={**_STREAM_RESPONSE, **error_responses(409, 413, 422, 429, 502, 503)},
    summary="Start a fan-out and stream one agent for useChat",
)
async def chat_ui_message_stream(
    request: Request, state: State, body: Annotated[ChatRequest, Body()]
) -> Response:
    """What `useChat` calls: starts a fan-out to `agents` (or `preset`) with the last user
    message and streams the agent `column` as a UI message stream.

    The other agents run in the same fan-out (`messageMetadata.fanout_id` of the `start`
    part); stream each with `GET /v1/fanouts/{id}/agents/{agent_id}/ui-message-stream`.
    Leaving early (useChat's `stop()`) cancels this agent only. The chat `id` is a session
    with a Letta server: the next message continues the same conversations.
    """
    if not body.prompt().strip():
        raise ApiError(
            422, "no_user_text", "body.messages: the last user message holds no text part"
        )
    agents, options = await resolve_agents(body.agents, body.preset, body.options, "body")
    _check_column(body.column, agents)
    # The other columns are read by other requests: this client leaving must not stop them.
    options = options.model_copy(update={"on_disconnect": options.on_disconnect or "continue"})
    started = await start_fanout(
        request,
        state,
        conversation=body.id,
        agents=agents,
        message=body.prompt(),
        options=options,
        streaming=True,
        transport="ui-message-stream",
    )
    entry = started.entry
    column = _pick(entry, body.column)
    # Kept in the hub, so that useChat's resume finds it on whichever replica it lands.
    await state.require_hub().remember(_chat_key(body.id), f"{entry.fanout_id}\t{column}")
    return _column_response(state, started, column, True)


@router.get(
    "/v1/ui-message-stream/{chat_id}/stream",
    response_class=Response,
    responses={**_STREAM_RESPONSE, 204: {"description": "No stream of this chat is running."}},
)
async def resume_chat_stream(chat_id: str, request: Request, state: State) -> Response:
    """`useChat`'s resume: the latest stream of chat `chat_id`, replayed then live."""
    note = await state.require_hub().recall(_chat_key(chat_id))
    if note is None or "\t" not in note:
        return Response(status_code=204)
    found = note.split("\t", 1)
    try:
        entry = await find(state, found[0])
    except ApiError:
        return Response(status_code=204)
    state_of = entry.summary()["agents"].get(found[1], {}).get("state")
    if not entry.running or state_of in ("done", "error", "cancelled"):
        return Response(status_code=204)
    return _column_response(state, FanOutStart(entry, None), found[1], False)


def _chat_key(chat_id: str) -> str:
    return f"ui-message-chat:{chat_id}"


def _column(entry: HubFanOut, agent_id: str) -> str:
    if agent_id not in entry.agents:
        raise ApiError(
            404,
            "agent_not_found",
            f"no agent {agent_id!r} in fan-out {entry.fanout_id} "
            f"(agents: {', '.join(entry.agents)})",
        )
    return agent_id


def _check_column(column: int | str, agents: list[MemberRequest]) -> None:
    # Checked before the fan-out starts (the schema cannot say it: it depends on agents).
    if isinstance(column, int):
        if column < len(agents):
            return
        message = f"column: {column} is past the last of the {len(agents)} agents"
    else:
        if any(column in (a.agent_id, a.name, a.label) for a in agents):
            return
        message = f"column: {column!r} is not the agent_id, name or label of an agent"
    raise ApiError(422, "unknown_column", message)


def _pick(entry: HubFanOut, column: int | str) -> str:
    columns = list(entry.agents)
    if isinstance(column, int):
        return columns[min(column, len(columns) - 1)]
    if column in entry.agents:
        return column
    by_label = [a for a, label in entry.agents.items() if label == column]
    if by_label:
        return by_label[0]
    entry.cancel(reason="user")
    raise ApiError(
        422,
        "unknown_column",
        f"column: no agent {column!r} in this fan-out (columns: {', '.join(columns)})",
    )


def _column_response(state: ApiState, started: FanOutStart, column: str, owner: bool) -> Response:
    entry = started.entry
    try:
        entry.log.check(-1)
    except FanOutExpiredError as exc:
        raise ApiError(410, "events_expired", str(exc)) from None
    translator = UiMessageTranslator(entry.fanout_id, column)
    metadata = {
        **started.announcement(),
        "agent_id": column,
        "label": entry.agents[column],
    }
    return protocol_stream(
        state,
        entry,
        _parts(entry, translator, metadata, owner),
        headers={**HEADERS, "X-Agent-Id": column},
    )


async def _parts(
    entry: HubFanOut, translator: UiMessageTranslator, metadata: dict[str, Any], owner: bool
) -> AsyncIterator[bytes]:
    for part in translator.opening(metadata):
        yield encode(part)
    # A plain subscription, not a watcher: a reader of one column leaving (its agent done,
    # or gone) must not count as the fan-out's client going away.
    sub = entry.log.subscribe(-1)
    try:
        async for event in sub:
            for part in translator.translate(event):
                yield encode(part)
            if translator.done:
                break
    except FanOutExpiredError as exc:
        yield encode({"type": "error", "errorText": f"events_expired: {exc}"})
    finally:
        sub.close()
        if owner and not translator.done:
            # useChat's stop(): the request that started this agent went away.
            entry.cancel(translator.agent_id, reason="disconnect")
    if not translator.done:
        yield encode({"type": "abort", "reason": "the fan-out ended without this agent's end"})
    yield DONE
