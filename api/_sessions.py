"""Sessions: each user's own Letta conversations, with follow-ups, forks and model comparison.

``POST /v1/sessions`` creates one (a fresh conversation per member; the same agent may be a
member several times, with different models); ``POST /v1/sessions/{id}/fanouts`` sends a
message to its members' conversations and behaves like ``POST /v1/fanouts`` (SSE with
``Accept: text/event-stream``, else ``201`` with ``events_url``; the same resume, cancel and
status endpoints apply). ``GET /v1/sessions/{id}`` returns the session with its thread.

A conversation never has two runs at once through this server: a fan-out that would start
a second one is refused with ``409 conversation_busy`` before anything starts.

Sessions need a Letta server (a ``LettaDirectory``) and live in the SQL database named by
``ApiSettings.database_url`` (default ``$ORCHESTRATOR_DATABASE_URL``, else SQLite at
``./.orchestrator/state.db``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Body, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import HTTPConnection

from orchestrator import (
    CapacityError,
    ConfigError,
    ConversationBusyError,
    HubFanOut,
    LettaDirectory,
    MemberSpec,
    Sessions,
    SourceError,
    UnknownSessionError,
    open_session_store,
)

from ._errors import ApiError, describe_exception, error_body, error_responses
from ._fanouts import _SSE_RESPONSE, events_url, stream_response, wants_stream
from ._models import AgentSpec, FanOutCreated, Message, Name, OptionsSpec
from ._state import ApiState, State

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], responses=error_responses(401))


# -- bodies -----------------------------------------------------------------------------------


class MemberRequest(AgentSpec):
    """One member: an agent by ``agent_id`` or ``name``, a label, a model handle."""

    model: Annotated[Name, Field(min_length=1)] | None = None

    def to_spec(self) -> MemberSpec:
        return MemberSpec(
            agent_id=self.agent_id, name=self.name, label=self.label, model=self.model
        )


class SessionRequest(BaseModel):
    """Body of ``POST /v1/sessions``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "agents": [
                        {"name": "optimist", "model": "openai-proxy/scripted"},
                        {"name": "optimist", "model": "openai-proxy/scripted-slow"},
                    ],
                    "title": "one agent, two models",
                }
            ]
        },
    )

    agents: list[MemberRequest] = Field(min_length=1)
    title: Name | None = None


class ForkRequest(BaseModel):
    """Body of ``POST /v1/sessions/{id}/fork`` (optional)."""

    model_config = ConfigDict(extra="forbid")

    title: Name | None = None


class SessionMessage(BaseModel):
    """Body of ``POST /v1/sessions/{id}/fanouts``: the message for every member."""

    model_config = ConfigDict(extra="forbid")

    message: Message
    options: OptionsSpec = Field(default_factory=OptionsSpec)


class MemberView(BaseModel):
    """A member: ``column_id`` is the ``agent_id`` its events carry."""

    column_id: str
    agent_id: str
    conversation_id: str
    label: str
    model: str | None


class SessionView(BaseModel):
    """A session without its thread."""

    session_id: str
    title: str | None
    parent_id: str | None
    created_at: float
    agents: list[MemberView]


class AnswerView(BaseModel):
    """How one member answered one turn (``running`` until its fan-out ends)."""

    label: str
    text: str
    state: str
    run_id: str | None
    error: str | None


class TurnView(BaseModel):
    """One fan-out of a session: its message and each member's answer by column id."""

    fanout_id: str
    message: str
    created_at: float
    answers: dict[str, AnswerView]


class SessionDetail(SessionView):
    """A session and its thread."""

    turns: list[TurnView]


class SessionList(BaseModel):
    """Sessions, newest first."""

    sessions: list[SessionView]


def install_busy_handler(app: FastAPI) -> None:
    """Answer :class:`ConversationBusyError` (any fan-out start) with ``409``.

    ``{"error": {"code": "conversation_busy", "message": ..., "agents": [column ids]}}``.
    """

    async def on_busy(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ConversationBusyError)
        return JSONResponse(busy_body(exc), 409)

    app.add_exception_handler(ConversationBusyError, on_busy)


def busy_body(exc: ConversationBusyError) -> dict[str, Any]:
    """The error body of a refused fan-out (also the WebSocket's error frame fields)."""
    body = error_body("conversation_busy", str(exc))
    body["error"]["agents"] = list(exc.agents)
    return body


# -- the service --------------------------------------------------------------------------------


@asynccontextmanager
async def serve_sessions(app: FastAPI, state: ApiState) -> AsyncIterator[None]:
    """Run the sessions service for the app's lifespan (with a Letta directory only)."""
    directory = state.directory
    hub = state.require_hub()
    if not isinstance(directory, LettaDirectory):
        app.state.sessions = None
        yield
        return
    async with open_session_store(state.settings.database_url) as store:
        sessions = Sessions(store, directory)
        hub.add_observer(sessions.observe)
        # A session fan-out taken over from a dead replica still gets its answers recorded.
        hub.add_takeover_hook(sessions.adopt)
        app.state.sessions = sessions
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(sessions.run_recorder)
                try:
                    yield
                finally:
                    tg.cancel_scope.cancel()
        finally:
            app.state.sessions = None


def get_sessions(conn: HTTPConnection) -> Sessions:
    """The app's sessions service; ``503`` when the server has no Letta directory."""
    sessions: Sessions | None = getattr(conn.app.state, "sessions", None)
    if sessions is None:
        raise ApiError(
            503, "sessions_unavailable", "sessions need a Letta server and a running app"
        )
    return sessions


def _not_found(exc: UnknownSessionError) -> ApiError:
    return ApiError(404, "session_not_found", str(exc))


def _letta_failed(exc: BaseException) -> ApiError:
    return ApiError(502, "letta_unavailable", f"the Letta server failed: {describe_exception(exc)}")


async def start_session_fanout(
    state: ApiState,
    sessions: Sessions,
    session_id: str,
    message: str,
    spec: OptionsSpec,
    *,
    streaming: bool,
    transport: str,
) -> HubFanOut:
    """Start a session's fan-out in the hub (HTTP and WebSocket alike).

    Raises :class:`ApiError` (``404`` unknown session, ``413`` message, ``422`` options,
    ``429`` full server) and ``ConversationBusyError`` (answered ``409``).
    """
    hub = state.require_hub()
    size = len(message.encode())
    if size > state.settings.max_message_bytes:
        raise ApiError(
            413,
            "message_too_large",
            f"message is {size} bytes, the maximum is {state.settings.max_message_bytes}",
        )
    options = spec.to_options()
    try:
        entry = await sessions.start(
            hub,
            session_id,
            message,
            options,
            on_disconnect=spec.disconnect_policy(streaming=streaming),
        )
    except UnknownSessionError as exc:
        raise _not_found(exc) from None
    except CapacityError:
        retry = max(1, round(hub.retry_after_s))
        raise ApiError(
            429,
            "too_many_fanouts",
            f"{hub.active} fan-outs are running, the maximum is {hub.max_active}; retry later",
            headers={"Retry-After": str(retry)},
        ) from None
    except ConfigError as exc:
        raise ApiError(422, "invalid_options", str(exc)) from None
    state.metrics.fanouts.labels(transport).inc()
    return entry


# -- endpoints ----------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model=SessionView,
    responses=error_responses(422, 502, 503),
    summary="Create a session",
)
async def create_session(
    request: Request, body: Annotated[SessionRequest, Body()]
) -> dict[str, Any]:
    """A new session: one fresh Letta conversation per member.

    The same agent may be a member several times (give each a different `model`): each
    appearance is a column of its own, with its own column id. `422` names an agent that
    does not exist.
    """
    sessions = get_sessions(request)
    try:
        record = await sessions.create([a.to_spec() for a in body.agents], title=body.title)
    except ConfigError as exc:
        raise ApiError(422, "agent_not_found", str(exc)) from None
    except SourceError as exc:
        raise _letta_failed(exc) from None
    return record.to_json()


@router.get("", response_model=SessionList, responses=error_responses(422, 503))
async def list_sessions(
    request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, Any]:
    """Sessions, newest first."""
    sessions = get_sessions(request)
    return {"sessions": [r.to_json() for r in await sessions.recent(limit)]}


@router.get("/{session_id}", response_model=SessionDetail, responses=error_responses(404, 503))
async def get_session(request: Request, session_id: str) -> dict[str, Any]:
    """The session with its thread: every turn's message and each member's answer.

    Answer texts are read from the members' conversations on the Letta server.
    """
    sessions = get_sessions(request)
    try:
        record = await sessions.get(session_id)
        turns = await sessions.thread(session_id)
    except UnknownSessionError as exc:
        raise _not_found(exc) from None
    return {**record.to_json(), "turns": [t.to_json() for t in turns]}


@router.delete("/{session_id}", status_code=204, responses=error_responses(404, 503))
async def delete_session(request: Request, session_id: str) -> Response:
    """Forget the session and delete its conversations on the Letta server."""
    sessions = get_sessions(request)
    try:
        await sessions.delete(session_id)
    except UnknownSessionError as exc:
        raise _not_found(exc) from None
    return Response(status_code=204)


@router.post(
    "/{session_id}/fork",
    status_code=201,
    response_model=SessionView,
    responses=error_responses(404, 422, 502, 503),
)
async def fork_session(
    request: Request,
    session_id: str,
    body: Annotated[ForkRequest | None, Body()] = None,
) -> dict[str, Any]:
    """A new session whose conversations are Letta forks of this one's: it starts with this
    session's turns, then goes its own way."""
    sessions = get_sessions(request)
    try:
        record = await sessions.fork(session_id, title=body.title if body else None)
    except UnknownSessionError as exc:
        raise _not_found(exc) from None
    except SourceError as exc:
        raise _letta_failed(exc) from None
    return record.to_json()


@router.post(
    "/{session_id}/fanouts",
    status_code=201,
    response_model=FanOutCreated,
    responses={**_SSE_RESPONSE, **error_responses(404, 409, 413, 422, 429, 503)},
    summary="Send a message to a session",
)
async def create_session_fanout(
    request: Request,
    state: State,
    session_id: str,
    body: Annotated[SessionMessage, Body()],
) -> Response:
    """Send one message to every member's conversation (a follow-up sees the earlier turns).

    Like `POST /v1/fanouts`: with `Accept: text/event-stream` the response is the event
    stream, otherwise `201` with its `events_url`. `409 conversation_busy` when a fan-out
    in one of these conversations still runs.
    """
    sessions = get_sessions(request)
    streaming = wants_stream(request)
    entry = await start_session_fanout(
        state,
        sessions,
        session_id,
        body.message,
        body.options,
        streaming=streaming,
        transport="sse" if streaming else "rest",
    )
    if streaming:
        return stream_response(state, entry, -1)
    url = events_url(entry.fanout_id)
    created = FanOutCreated(fanout_id=entry.fanout_id, events_url=url)
    return JSONResponse(created.model_dump(), 201, headers={"Location": url})
