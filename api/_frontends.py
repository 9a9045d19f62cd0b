"""What the frontend protocols share (AG-UI in ``_agui``, the AI SDK stream in ``_aisdk``).

Both endpoints take the agents as ``POST /v1/fanouts`` does (or a panel preset by id), start
an ordinary fan-out in the hub (so ``GET /v1/fanouts/{id}`` and cancel work on it) and
write the protocol's own SSE framing: ``data: <json>`` lines separated by a blank line,
with ``\\n`` line ends (AG-UI's client splits events on ``\\n\\n`` only).

A conversation id of the protocol (AG-UI's ``threadId``, ``useChat``'s ``id``) is a session
id: with a Letta server, the first call creates the session under that id and later calls
continue its members' conversations. A server of scripted agents has no sessions; there
every call is a fresh fan-out.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import Request
from pydantic import (
    Field,
    GetJsonSchemaHandler,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError
from sse_starlette import EventSourceResponse
from typing_extensions import TypeAliasType

from orchestrator import (
    ConfigError,
    HubFanOut,
    Sessions,
    SourceError,
    UnknownSessionError,
)

from ._errors import ApiError, describe_exception
from ._fanouts import _EventStream, events_url
from ._models import AgentSpec, FanOutRequest, OptionsSpec, Text
from ._presets import PresetCache
from ._sessions import MemberRequest, start_session_fanout
from ._state import ApiState, launch

__all__ = [
    "AGENTS_OR_PRESET",
    "OPEN_NAMES",
    "SSE_MESSAGE",
    "ConversationId",
    "FanOutStart",
    "FreeJson",
    "JsonText",
    "app_dict",
    "check_strings",
    "protocol_stream",
    "resolve_agents",
    "start_fanout",
    "text_of_parts",
]

#: A protocol's conversation id (AG-UI ``threadId``, ``useChat`` ``id``): it is used as a
#: session id, so it is short and safe in a URL path.
ConversationId = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"), Field(min_length=1)
]

#: An SSE message of a protocol stream, as OpenAPI describes an event stream: ``data`` holds
#: one JSON text (the AI SDK's stream ends with ``[DONE]``).
SSE_MESSAGE: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
}


class _Closed:
    """An object's JSON Schema allows only the properties its pattern names."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["additionalProperties"] = False
        return schema


#: JSON whose strings (keys too) are text: what a protocol may carry that the server does
#: not read (AG-UI's ``state`` and ``tools``, extra fields of a message).
if TYPE_CHECKING:
    JsonText = Any
else:
    JsonText = TypeAliasType(
        "JsonText",
        Text
        | int
        | float
        | bool
        | list["JsonText"]
        | Annotated[dict[Text, "JsonText"], _Closed()]
        | None,
    )


def _keep(value: Any) -> Any:
    return value  # checked by the body's walk (check_strings), which names the path


#: A free JSON field: documented as :data:`JsonText`, checked by :func:`check_strings`.
FreeJson = Annotated[Any, PlainValidator(_keep, json_schema_input_type=JsonText)]

#: JSON Schema of a model whose extra fields are :data:`FreeJson`: their names are text too.
OPEN_NAMES: dict[str, Any] = {
    "propertyNames": {"pattern": TypeAdapter(Text).json_schema()["pattern"]}
}

#: The schema of "agents (a non-empty list) or preset (a string)", as the models check it.
AGENTS_OR_PRESET: Any = [
    {"required": ["agents"], "properties": {"agents": {"type": "array", "minItems": 1}}},
    {"required": ["preset"], "properties": {"preset": {"type": "string", "minLength": 1}}},
]

# The presets of ./configs, as GET /v1/presets offers them.
_PRESETS = PresetCache("configs")
_MAX_DEPTH = 64
# The one rule for client text (api/_models.py), applied to every string of a body.
_TEXT: TypeAdapter[str] = TypeAdapter(Text)


def check_strings(value: Any, where: str = "", depth: int = 0) -> None:
    """Refuse a body holding a string (key or value) that is not text: lone surrogates and
    control characters (tab and line breaks are kept), as every other endpoint does.

    Raises ``PydanticCustomError`` naming the path (``messages[0].content``), for a model
    validator to report as ``422``.
    """
    if depth > _MAX_DEPTH:
        raise PydanticCustomError(
            "too_deep",
            "{where} is nested more than {depth} levels deep",
            {"where": where or "the body", "depth": _MAX_DEPTH},
        )
    if isinstance(value, str):
        try:
            _TEXT.validate_python(value)
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise PydanticCustomError(
                "invalid_text", "{where}: {problem}", {"where": where or "body", "problem": problem}
            ) from None
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_strings(key, f"a key of {where or 'the body'}", depth + 1)
            check_strings(item, f"{where}.{key}" if where else str(key), depth + 1)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            check_strings(item, f"{where}[{n}]", depth + 1)


async def resolve_agents(
    agents: Sequence[MemberRequest] | None,
    preset: str | None,
    options: OptionsSpec | None,
    where: str,
) -> tuple[list[MemberRequest], OptionsSpec]:
    """The agents and options of a request: given, or those of the panel preset ``preset``.

    Options given in the request win over the preset's. ``422 unknown_preset`` names a
    preset that the configs folder does not hold.
    """
    if agents:
        return list(agents), options or OptionsSpec()
    listing = await _PRESETS.aread()
    found = next((p for p in listing.presets if p.id == preset), None)
    if found is None:
        known = ", ".join(p.id for p in listing.presets) or "none"
        raise ApiError(
            422, "unknown_preset", f"{where}.preset: no preset {preset!r} (presets: {known})"
        )
    members = [MemberRequest(agent_id=a.agent_id, name=a.name, label=a.label) for a in found.agents]
    return members, options or found.options


class FanOutStart:
    """A fan-out started for a protocol request, and the session it belongs to (if any)."""

    def __init__(self, entry: HubFanOut, session_id: str | None) -> None:
        self.entry = entry
        self.session_id = session_id

    def announcement(self) -> dict[str, Any]:
        """What the stream tells the client first: ids, URLs and the columns."""
        entry = self.entry
        return {
            "fanout_id": entry.fanout_id,
            "events_url": events_url(entry.fanout_id),
            "status_url": f"/v1/fanouts/{entry.fanout_id}",
            "cancel_url": f"/v1/fanouts/{entry.fanout_id}/cancel",
            "session_id": self.session_id,
            "agents": [{"agent_id": a, "label": label} for a, label in entry.agents.items()],
        }


async def start_fanout(
    request: Request,
    state: ApiState,
    *,
    conversation: str,
    agents: Sequence[MemberRequest],
    message: str,
    options: OptionsSpec,
    streaming: bool,
    transport: str,
) -> FanOutStart:
    """Start the fan-out of a protocol request in the hub.

    With sessions (a Letta server), ``conversation`` names the session: created from
    ``agents`` on first use, continued afterwards (its members are then the columns).
    Raises :class:`ApiError` as ``POST /v1/fanouts`` does, and ``ConversationBusyError``
    (``409``) while a fan-out of that session still runs.
    """
    sessions: Sessions | None = getattr(request.app.state, "sessions", None)
    if sessions is None:
        # Scripted agents have no model to choose: ``model`` matters with Letta only.
        body = FanOutRequest.model_construct(
            agents=[AgentSpec(agent_id=a.agent_id, name=a.name, label=a.label) for a in agents],
            message=message,
            options=options,
        )
        entry = await launch(state, body, streaming=streaming, transport=transport)
        return FanOutStart(entry, None)
    if len(agents) > state.settings.max_agents:
        raise ApiError(
            422,
            "too_many_agents",
            f"a fan-out may have at most {state.settings.max_agents} agents, got {len(agents)}",
        )
    async with _creating(request, conversation):
        await _ensure_session(sessions, conversation, agents)
    entry = await start_session_fanout(
        state,
        sessions,
        conversation,
        message,
        options,
        streaming=streaming,
        transport=transport,
    )
    return FanOutStart(entry, conversation)


async def _ensure_session(
    sessions: Sessions, session_id: str, agents: Sequence[MemberRequest]
) -> None:
    try:
        await sessions.get(session_id)
        return
    except UnknownSessionError:
        pass
    try:
        await sessions.create([a.to_spec() for a in agents], session_id=session_id)
    except ConfigError as exc:
        raise ApiError(422, "agent_not_found", str(exc)) from None
    except SourceError as exc:
        raise ApiError(
            502, "letta_unavailable", f"the Letta server failed: {describe_exception(exc)}"
        ) from None
    except Exception:
        # With several replicas, another one may have created this thread's session a moment
        # earlier (the lock below is per process): its row won, ours was rolled back.
        if not await _session_exists(sessions, session_id):
            raise


async def _session_exists(sessions: Sessions, session_id: str) -> bool:
    try:
        await sessions.get(session_id)
    except UnknownSessionError:
        return False
    return True


@asynccontextmanager
async def _creating(request: Request, key: str) -> AsyncIterator[None]:
    # Two first calls of one thread at once must not both create its session (in this
    # process; across replicas the database's key decides, see _ensure_session).
    locks: dict[str, list[Any]] = app_dict(request, "frontend_locks")
    held = locks.setdefault(key, [anyio.Lock(), 0])
    held[1] += 1
    try:
        async with held[0]:
            yield
    finally:
        held[1] -= 1
        if held[1] == 0:
            del locks[key]


def app_dict(conn: Request, name: str) -> dict[str, Any]:
    """A dict kept on the app's state under ``name`` (created empty on first use)."""
    found: dict[str, Any] | None = getattr(conn.app.state, name, None)
    if found is None:
        found = {}
        setattr(conn.app.state, name, found)
    return found


def protocol_stream(
    state: ApiState,
    entry: HubFanOut,
    body: AsyncIterator[bytes],
    *,
    media_type: str = "text/event-stream",
    headers: Mapping[str, str] | None = None,
) -> EventSourceResponse:
    """An SSE response of already framed ``body`` chunks, with keep-alive comments."""
    settings = state.settings
    return _EventStream(
        entry.fanout_id,
        body,
        ping=settings.ping_s,
        send_timeout=settings.send_timeout_s,
        sep="\n",
        media_type=media_type,
        headers={"X-Fanout-Id": entry.fanout_id, **(headers or {})},
    )


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(text: str) -> str:
    """``text`` with lone surrogates (from an upstream server) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def text_of_parts(parts: Sequence[Mapping[str, Any]]) -> str:
    """The text of a message's parts (AG-UI content, AI SDK parts): its text parts, joined."""
    return "".join(
        part["text"]
        for part in parts
        if part.get("type") == "text" and isinstance(part.get("text"), str)
    )
