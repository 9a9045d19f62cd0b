"""AG-UI for a whole fan-out: ``POST /v1/ag-ui`` (CopilotKit, ``@ag-ui/client``'s ``HttpAgent``).

The body is AG-UI's ``RunAgentInput``. The agents come from ``forwardedProps.agents`` (the
refs of ``POST /v1/fanouts``, ``model`` included) or ``forwardedProps.preset``; the prompt
is the last user message; ``forwardedProps.options`` are the fan-out's options. The
``threadId`` is a session id: the first run creates the session, later runs continue the
same conversations.

The answer is a stream of AG-UI events built with ``ag_ui.core``'s models and written by
``ag_ui.encoder.EventEncoder`` (:class:`AgUiTranslator` maps our events):

- ``RUN_STARTED``, then ``CUSTOM fanout_start`` with the fan-out's id and URLs (it is an
  ordinary fan-out: ``GET /v1/fanouts/{id}`` and cancel work on it);
- per agent, text, tool and reasoning events with ``subagentRunId`` = the column id; each
  agent's answer is one assistant message (``messageId`` ``<fanout id>.<column>``, ``name``
  its label);
- an agent's end: ``CUSTOM agent_done`` (stop reason and metrics), usage as ``CUSTOM
  usage``; errors and cancellations as ``CUSTOM agent_error`` / ``agent_cancelled``, or, when
  the client opts in (``forwardedProps.subagentEvents: true`` or the header
  ``X-AG-UI-Subagent-Events: true``), the agents' lives as ``SUBAGENT_STARTED`` and
  ``SUBAGENT_FINISHED`` / ``SUBAGENT_ERROR`` (older clients reject those events);
- ``CUSTOM fanout_done`` and ``RUN_FINISHED`` after ``fanout_done`` (``RUN_ERROR`` if the
  fan-out's events were lost).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from ag_ui.core import (
    BaseEvent,
    CustomEvent,
    ReasoningMessageContentEvent,
    ReasoningMessageEndEvent,
    ReasoningMessageStartEvent,
    RunErrorEvent,
    RunFinishedEvent,
    RunStartedEvent,
    SubagentErrorEvent,
    SubagentFinishedEvent,
    SubagentStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)
from ag_ui.encoder import EventEncoder
from fastapi import APIRouter, Body, Request
from fastapi.responses import Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from orchestrator import Event, FanOutExpiredError

from ._errors import error_responses
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
from ._models import Message, Name, OptionsSpec, Text
from ._sessions import MemberRequest
from ._state import State

__all__ = ["AgUiTranslator", "router"]

router = APIRouter(tags=["frontends"], responses=error_responses(401))

SUBAGENT_HEADER = "x-ag-ui-subagent-events"

_CAMEL = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")
_TEXT_PART = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "text"}, "text": {"type": "string", "pattern": r"\S"}},
}


class AgUiProps(BaseModel):
    """``forwardedProps``: the agents (or a preset), the fan-out's options, the opt-in."""

    model_config = ConfigDict(
        **_CAMEL,
        json_schema_extra={
            **OPEN_NAMES,
            "anyOf": AGENTS_OR_PRESET,
        },
    )
    __pydantic_extra__: dict[str, FreeJson] = Field(init=False)

    agents: list[MemberRequest] | None = Field(default=None, min_length=1)
    preset: Annotated[Name, Field(min_length=1)] | None = None
    options: OptionsSpec | None = None
    #: Send ``SUBAGENT_*`` lifecycle events (AG-UI clients of protocol 1.0 and later).
    subagent_events: bool = Field(default=False, strict=True)

    @model_validator(mode="after")
    def _agents_or_preset(self) -> AgUiProps:
        if not self.agents and self.preset is None:
            raise ValueError("forwardedProps needs 'agents' (at least one) or 'preset'")
        return self


#: What a user message's content may be, as the schema says it: text, or content parts of
#: which at least one is a text part.
_UserContent = (
    Message
    | Annotated[
        list[dict[Text, FreeJson]],
        Field(min_length=1, json_schema_extra={"contains": _TEXT_PART}),
    ]
)
_MESSAGE: TypeAdapter[str] = TypeAdapter(Message)


def _user_content(value: Any) -> str | list[dict[str, Any]]:
    # One readable error per case rather than one per member of the union above.
    if isinstance(value, str):
        try:
            return _MESSAGE.validate_python(value)
        except ValidationError as exc:
            raise PydanticCustomError(
                "invalid_text", "{problem}", {"problem": exc.errors()[0]["msg"]}
            ) from None
    if isinstance(value, list) and all(isinstance(part, dict) for part in value):
        texts = [p.get("text") for p in value if p.get("type") == "text"]
        if any(isinstance(t, str) and t.strip() for t in texts):
            return value
        raise PydanticCustomError("no_text", "content parts hold no text part with text")
    raise PydanticCustomError("content_type", "content is text or a list of content parts")


class AgUiUserMessage(BaseModel):
    """A user message: its text (a string, or content parts with at least one text part)."""

    model_config = ConfigDict(**_CAMEL, json_schema_extra=OPEN_NAMES)
    __pydantic_extra__: dict[str, FreeJson] = Field(init=False)

    id: Annotated[Name, Field(min_length=1)]
    role: Literal["user"]
    content: Annotated[
        str | list[dict[str, Any]],
        PlainValidator(_user_content, json_schema_input_type=_UserContent),
    ]

    def text(self) -> str:
        """The message's text (text parts joined)."""
        if isinstance(self.content, str):
            return self.content
        return text_of_parts(self.content)


class AgUiOtherMessage(BaseModel):
    """Any other message of the thread (the client sends back what it was given)."""

    model_config = ConfigDict(**_CAMEL, json_schema_extra=OPEN_NAMES)
    __pydantic_extra__: dict[str, FreeJson] = Field(init=False)

    id: Annotated[Name, Field(min_length=1)]
    role: Literal["assistant", "system", "developer", "tool", "reasoning", "activity"]


class AgUiRunInput(BaseModel):
    """AG-UI's ``RunAgentInput``, with the agents in ``forwardedProps``."""

    model_config = ConfigDict(
        **_CAMEL,
        json_schema_extra={
            **OPEN_NAMES,
            "examples": [
                {
                    "threadId": "thread-1",
                    "runId": "run-1",
                    "messages": [{"id": "m1", "role": "user", "content": "Name a prime."}],
                    "state": {},
                    "tools": [],
                    "context": [],
                    "forwardedProps": {"agents": [{"name": "optimist"}, {"name": "critic"}]},
                }
            ],
        },
    )

    __pydantic_extra__: dict[str, FreeJson] = Field(init=False)

    thread_id: ConversationId
    run_id: Annotated[Name, Field(min_length=1)]
    parent_run_id: Name | None = None
    protocol_version: Name | None = None
    state: FreeJson = None
    messages: Annotated[
        list[Annotated[AgUiUserMessage | AgUiOtherMessage, Field(discriminator="role")]],
        Field(
            min_length=1,
            json_schema_extra={
                "contains": {"type": "object", "properties": {"role": {"const": "user"}}}
            },
        ),
    ]
    tools: list[FreeJson] | None = None
    context: list[FreeJson] | None = None
    forwarded_props: AgUiProps
    resume: list[FreeJson] | None = None

    @model_validator(mode="before")
    @classmethod
    def _only_text(cls, data: Any) -> Any:
        check_strings(data)
        return data

    def prompt(self) -> str:
        """The last user message's text."""
        users = [m for m in self.messages if isinstance(m, AgUiUserMessage)]
        if not users:
            raise ValueError("messages: no user message to send")
        return users[-1].text()

    @model_validator(mode="after")
    def _has_prompt(self) -> AgUiRunInput:
        if not self.prompt().strip():
            raise ValueError("messages: the last user message holds no text")
        return self


class _Column:
    """What the translator remembers of one agent."""

    __slots__ = ("label", "message_id", "reasoning", "reasonings", "text_open")

    def __init__(self, label: str, message_id: str) -> None:
        self.label = label
        self.message_id = message_id
        self.text_open = False
        self.reasoning: tuple[str | None, str] | None = None  # (our message id, AG-UI id)
        self.reasonings = 0


class AgUiTranslator:
    """Turns a fan-out's events into AG-UI events, for one run of one thread."""

    def __init__(self, thread_id: str, run_id: str, *, subagents: bool = False) -> None:
        self.thread_id = thread_id
        self.run_id = run_id
        self.subagents = subagents
        self.finished = False
        self._columns: dict[str, _Column] = {}

    def started(self) -> RunStartedEvent:
        """The run's first event."""
        return RunStartedEvent(thread_id=self.thread_id, run_id=self.run_id)

    def failed(self, message: str, code: str) -> RunErrorEvent:
        """The run's last event when the fan-out's events could not be read to the end."""
        self.finished = True
        return RunErrorEvent(message=message, code=code)

    def translate(self, event: Event) -> list[BaseEvent]:
        """The AG-UI events for ``event`` (often none or one)."""
        if event.agent_id is None:
            return self._fanout_event(event)
        column = self._columns.get(event.agent_id)
        if column is None:
            column = self._column(event.agent_id, event.label or event.agent_id, event.fanout_id)
        agent = event.agent_id
        kind = event.type
        if kind == "content":
            out = self._end_reasoning(agent, column)
            delta = clean(event.delta)
            if not delta:
                return out
            out += self._open_text(agent, column)
            out.append(
                TextMessageContentEvent(
                    message_id=column.message_id, delta=delta, subagent_run_id=agent
                )
            )
            return out
        if kind == "reasoning":
            return self._reasoning(agent, column, event)
        if kind == "tool_call":
            # The call belongs to the agent's answer message, opened first so that the
            # message carries the agent's label even when a tool call comes before text.
            out = [*self._end_reasoning(agent, column), *self._open_text(agent, column)]
            call_id = f"{agent}:{event.get('tool_call_id') or event.seq}"
            out.append(
                ToolCallStartEvent(
                    tool_call_id=call_id,
                    tool_call_name=clean(str(event.get("name") or "tool")),
                    parent_message_id=column.message_id,
                    subagent_run_id=agent,
                )
            )
            arguments = event.get("arguments")
            text = arguments if isinstance(arguments, str) else dumps(arguments or {})
            if text:
                out.append(
                    ToolCallArgsEvent(
                        tool_call_id=call_id, delta=clean(text), subagent_run_id=agent
                    )
                )
            out.append(ToolCallEndEvent(tool_call_id=call_id, subagent_run_id=agent))
            return out
        if kind == "tool_result":
            call_id = f"{agent}:{event.get('tool_call_id') or event.seq}"
            result = event.get("result")
            content = result if isinstance(result, str) else dumps(result)
            return [
                ToolCallResultEvent(
                    message_id=f"{column.message_id}.tool.{event.seq}",
                    tool_call_id=call_id,
                    content=clean(content),
                    role="tool",
                    subagent_run_id=agent,
                )
            ]
        if kind == "usage":
            return [self._custom("usage", event, agent)]
        if event.is_terminal:
            return self._terminal(agent, column, event)
        return [self._custom(kind, event, agent)]

    def _column(self, agent: str, label: str, fanout_id: str) -> _Column:
        column = _Column(label, f"{fanout_id}.{agent}")
        self._columns[agent] = column
        return column

    def _fanout_event(self, event: Event) -> list[BaseEvent]:
        if event.type == "fanout_start":
            out: list[BaseEvent] = []
            for agent in event.get("agents") or ():
                column = self._column(agent["agent_id"], agent["label"], event.fanout_id)
                if self.subagents:
                    out.append(
                        SubagentStartedEvent(
                            subagent_run_id=agent["agent_id"], name=clean(column.label)
                        )
                    )
            return out
        if event.type == "fanout_done":
            self.finished = True
            counts = _safe(event.get("counts"))
            return [
                self._custom("fanout_done", event, None),
                RunFinishedEvent(
                    thread_id=self.thread_id,
                    run_id=self.run_id,
                    result={"fanout_id": event.fanout_id, "counts": counts},
                ),
            ]
        return [self._custom(event.type, event, None)]

    def _reasoning(self, agent: str, column: _Column, event: Event) -> list[BaseEvent]:
        out: list[BaseEvent] = []
        delta = clean(event.delta)
        if column.reasoning is not None and column.reasoning[0] != event.message_id:
            out = self._end_reasoning(agent, column)
        if not delta:
            return out
        if column.reasoning is None:
            column.reasonings += 1
            reasoning_id = f"{column.message_id}.reasoning.{column.reasonings}"
            column.reasoning = (event.message_id, reasoning_id)
            out.append(
                ReasoningMessageStartEvent(
                    message_id=reasoning_id, role="reasoning", subagent_run_id=agent
                )
            )
        out.append(
            ReasoningMessageContentEvent(
                message_id=column.reasoning[1], delta=delta, subagent_run_id=agent
            )
        )
        return out

    def _open_text(self, agent: str, column: _Column) -> list[BaseEvent]:
        if column.text_open:
            return []
        column.text_open = True
        start = TextMessageStartEvent(
            message_id=column.message_id,
            role="assistant",
            name=clean(column.label),
            subagent_run_id=agent,
        )
        return [start]

    def _end_reasoning(self, agent: str, column: _Column) -> list[BaseEvent]:
        if column.reasoning is None:
            return []
        reasoning_id = column.reasoning[1]
        column.reasoning = None
        return [ReasoningMessageEndEvent(message_id=reasoning_id, subagent_run_id=agent)]

    def _terminal(self, agent: str, column: _Column, event: Event) -> list[BaseEvent]:
        out = self._end_reasoning(agent, column)
        if column.text_open:
            column.text_open = False
            out.append(TextMessageEndEvent(message_id=column.message_id, subagent_run_id=agent))
        if event.type == "agent_done":
            out.append(self._custom("agent_done", event, agent))
            if self.subagents:
                out.append(
                    SubagentFinishedEvent(
                        subagent_run_id=agent,
                        result={"stop_reason": _safe(event.get("stop_reason"))},
                    )
                )
            return out
        if not self.subagents:
            out.append(self._custom(event.type, event, agent))
            return out
        if event.type == "agent_error":
            code = clean(str(event.get("code") or "error"))
            message = clean(str(event.get("message") or code))
        else:
            code = "cancelled"
            message = f"cancelled ({event.get('reason') or 'user'})"
        out.append(SubagentErrorEvent(subagent_run_id=agent, message=message, code=code))
        return out

    def _custom(self, name: str, event: Event, agent: str | None) -> CustomEvent:
        value = {k: v for k, v in event.to_dict().items() if k not in _ENVELOPE}
        value.update(fanout_id=event.fanout_id, agent_id=event.agent_id, label=event.label)
        return CustomEvent(name=name, value=_safe(value), subagent_run_id=agent)


_ENVELOPE = frozenset({"v", "type", "fanout_id", "agent_id", "label", "seq", "index", "t"})


def _safe(value: Any) -> Any:
    # Strict JSON with any lone surrogate (upstream text) replaced, so the encoder can write it.
    return orjson.loads(dumps(value))


_STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "AG-UI events, one `data: <event JSON>` per event (`ag_ui.encoder.EventEncoder`): "
            "RUN_STARTED ... RUN_FINISHED."
        ),
        "content": {"text/event-stream": {"schema": SSE_MESSAGE}},
    }
}


@router.post(
    "/v1/ag-ui",
    response_class=Response,
    responses={**_STREAM_RESPONSE, **error_responses(409, 413, 422, 429, 502, 503)},
    summary="Run a fan-out as an AG-UI agent",
)
async def run_ag_ui(
    request: Request, state: State, body: Annotated[AgUiRunInput, Body()]
) -> Response:
    """Fan the last user message out to the agents of `forwardedProps` and stream AG-UI events.

    The `threadId` is a session (with a Letta server): the first run creates it, later runs
    continue the same conversations. `409 conversation_busy` while a run of the thread still
    streams. Errors before the stream starts are JSON, as everywhere in this API.
    """
    props = body.forwarded_props
    agents, options = await resolve_agents(
        props.agents, props.preset, props.options, "forwardedProps"
    )
    started = await start_fanout(
        request,
        state,
        conversation=body.thread_id,
        agents=agents,
        message=body.prompt(),
        options=options,
        streaming=True,
        transport="ag-ui",
    )
    opted = request.headers.get(SUBAGENT_HEADER, "").strip().lower() in ("1", "true", "yes")
    translator = AgUiTranslator(
        body.thread_id, body.run_id, subagents=props.subagent_events or opted
    )
    encoder = EventEncoder(accept=request.headers.get("accept") or "")
    return protocol_stream(
        state,
        started.entry,
        _events(started, translator, encoder),
        media_type=encoder.get_content_type(),
    )


async def _events(
    started: FanOutStart, translator: AgUiTranslator, encoder: EventEncoder
) -> AsyncIterator[bytes]:
    yield encoder.encode(translator.started()).encode()
    announce = CustomEvent(name="fanout_start", value=_safe(started.announcement()))
    yield encoder.encode(announce).encode()
    try:
        async with started.entry.watch(-1) as sub:
            async for event in sub:
                for out in translator.translate(event):
                    yield encoder.encode(out).encode()
    except FanOutExpiredError as exc:
        yield encoder.encode(translator.failed(str(exc), "events_expired")).encode()
    if not translator.finished:
        failure = translator.failed("the fan-out ended without its fanout_done", "incomplete")
        yield encoder.encode(failure).encode()
