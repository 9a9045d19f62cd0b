"""REST and SSE endpoints of fan-outs: start, stream, resume, cancel, inspect.

Every stream is a reader of the fan-out's retained log (see ``orchestrator.EventLog``), so
the first stream, a second reader and a resume after a dropped connection all see the same
events with the same ``id:``, with no gap and no duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

from orchestrator import FanOutExpiredError, HubFanOut, UnknownAgentError

from ._delivery import GzipSend, accepts_gzip, encode_batch, event_batches
from ._errors import ApiError, error_body, error_responses
from ._json import dumps
from ._models import (
    CancelAccepted,
    CancelRequest,
    FanOutCreated,
    FanOutList,
    FanOutRequest,
    FanOutSummary,
)
from ._state import ApiState, State, find, launch

logger = logging.getLogger("api")

# Every route here is behind the API key (when the app has one).
router = APIRouter(prefix="/v1/fanouts", tags=["fan-outs"], responses=error_responses(401))

# One SSE message, as OpenAPI describes an event stream: the fields of the message, with
# ``data`` a JSON text holding an Event (or, for ``event: error``, an error's code and message).
_SSE_MESSAGE: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string"},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "anyOf": [
                    {"$ref": "#/components/schemas/Event"},
                    {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    },
                ]
            },
        },
    },
}

_SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "Server-Sent Events: `event: <type>`, `id: <index>`, `data: <Event JSON>`; "
            "ends after `fanout_done`. Keep-alive comments every 15 s."
        ),
        "content": {"text/event-stream": {"schema": _SSE_MESSAGE}},
    }
}


def events_url(fanout_id: str) -> str:
    """Where a fan-out's events can be read (and resumed)."""
    return f"/v1/fanouts/{fanout_id}/events"


class _EventStream(EventSourceResponse):
    """An SSE response that drops a client which stops reading, without a traceback."""

    def __init__(self, fanout_id: str, *args: Any, gzip: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fanout_id = fanout_id
        self.gzip = gzip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.gzip:
            # Every body message, pings included, compressed and flushed on its own.
            send = GzipSend(send)
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            # A client that stops reading is an expected condition, not a server error: the
            # body iterator is already closed (so on_disconnect applied); the server closes
            # the connection because the response cannot be completed.
            logger.warning(
                "fan-out %s: SSE client took no data for %s s, dropping it",
                self.fanout_id,
                self.send_timeout,
            )


def stream_response(
    state: ApiState, entry: HubFanOut, after: int, *, coalesce_ms: int = 0, gzip: bool = False
) -> EventSourceResponse:
    """An SSE response of ``entry``'s events after index ``after``, live to the end.

    ``coalesce_ms`` > 0 delivers in windows that merge text deltas; ``gzip`` compresses the
    body, flushed per message (see ``api/_delivery.py``).
    """
    try:
        # Checked before the response starts, so an expired range is a 410, not a stream.
        entry.log.check(after)
    except FanOutExpiredError as exc:
        raise ApiError(410, "events_expired", str(exc)) from None
    settings = state.settings

    async def on_client_close(message: Message) -> None:
        # Covers a client that leaves before the stream's first read registered it as a
        # watcher; otherwise leaving watch() applies on_disconnect (calling twice is safe).
        entry.client_gone()

    return _EventStream(
        entry.fanout_id,
        _sse_events(entry, after, coalesce_ms / 1000),
        gzip=gzip,
        ping=settings.ping_s,
        send_timeout=settings.send_timeout_s,
        client_close_handler_callable=on_client_close,
        headers={
            "X-Fanout-Id": entry.fanout_id,
            "Content-Location": events_url(entry.fanout_id),
        },
    )


async def _sse_events(
    entry: HubFanOut, after: int, coalesce_s: float = 0.0
) -> AsyncIterator[bytes | ServerSentEvent]:
    try:
        async with entry.watch(after) as sub:
            # What is ready goes out in one send (each event with its own id:), so a reader
            # pays one send, one timeout scope and one wake-up per batch, not per event.
            async for batch in event_batches(sub, coalesce_s):
                yield encode_batch(batch)
    except FanOutExpiredError as exc:
        # Dropped between the check and the first read: tell the client why the stream ends.
        body = error_body("events_expired", str(exc))["error"]
        yield ServerSentEvent(data=dumps(body), event="error")


def wants_stream(request: Request) -> bool:
    """True when the client accepts ``text/event-stream``."""
    return "text/event-stream" in request.headers.get("accept", "")


def wants_gzip(request: Request) -> bool:
    """True when the client accepts a gzip-encoded body."""
    return accepts_gzip(request.headers.get("accept-encoding", ""))


#: ``?coalesce_ms=N``: the delivery window of an event stream (0: every event at once).
CoalesceMs = Annotated[
    int,
    Query(
        ge=0,
        le=10_000,
        description=(
            "Delivery window in ms: consecutive text deltas of one agent and message that "
            "arrive within it go out as one event (the last index it covers); 0 sends every "
            "event as it comes."
        ),
    ),
]


@router.post(
    "",
    status_code=201,
    response_model=FanOutCreated,
    responses={**_SSE_RESPONSE, **error_responses(413, 422, 429, 502, 503)},
    summary="Start a fan-out",
)
async def create_fanout(
    request: Request,
    state: State,
    body: Annotated[FanOutRequest, Body()],
    coalesce_ms: CoalesceMs = 0,
) -> Response:
    """Send one message to several agents.

    With `Accept: text/event-stream` the response is the merged event stream itself (a
    disconnect cancels the agents unless `options.on_disconnect` is `continue`). Otherwise
    the fan-out runs in the background: `201` with the URL of its events.
    """
    streaming = wants_stream(request)
    entry = await launch(state, body, streaming=streaming, transport="sse" if streaming else "rest")
    if streaming:
        return stream_response(state, entry, -1, coalesce_ms=coalesce_ms, gzip=wants_gzip(request))
    url = events_url(entry.fanout_id)
    created = FanOutCreated(fanout_id=entry.fanout_id, events_url=url)
    return JSONResponse(created.model_dump(), 201, headers={"Location": url})


@router.get(
    "/{fanout_id}/events",
    # Only an event stream: without this, FastAPI would also list an empty JSON answer.
    response_class=EventSourceResponse,
    responses={
        **_SSE_RESPONSE,
        204: {"description": "The fan-out is over and the reader already has its last event."},
        **error_responses(404, 410, 422, 503),
    },
)
async def fanout_events(
    request: Request,
    fanout_id: str,
    state: State,
    after: Annotated[
        int | None, Query(ge=-1, description="Replay events after this index.")
    ] = None,
    last_event_id: Annotated[int | None, Header(ge=-1)] = None,
    coalesce_ms: CoalesceMs = 0,
) -> Response:
    """Read a fan-out's events: every retained event after `Last-Event-ID` (or `?after=N`),
    then live until `fanout_done`.

    `Last-Event-ID` wins over `after` (browsers resend the header on reconnect while the URL
    stays the same). `404` for an unknown id, `410` once the fan-out or those events expired.
    `204` when the fan-out is over and the reader already has its last event: by the
    EventSource standard that stops a browser's reconnects.
    """
    entry = await find(state, fanout_id)
    start = last_event_id if last_event_id is not None else after
    log = entry.log
    if start is not None and log.closed and start >= log.next_index - 1:
        return Response(status_code=204)
    return stream_response(
        state,
        entry,
        -1 if start is None else start,
        coalesce_ms=coalesce_ms,
        gzip=wants_gzip(request),
    )


@router.post(
    "/{fanout_id}/cancel",
    status_code=202,
    response_model=CancelAccepted,
    responses=error_responses(404, 410, 422, 503),
)
async def cancel_fanout(
    fanout_id: str, state: State, body: Annotated[CancelRequest | None, Body()] = None
) -> CancelAccepted:
    """Cancel one agent (`agent_id`) or all; the effect shows in the stream.

    `202` even when everything had already ended (`cancelled` is then false); `404` for an
    unknown fan-out or agent, `410` for an expired fan-out.
    """
    entry = await find(state, fanout_id)
    agent_id = body.agent_id if body is not None else None
    try:
        cancelled = entry.cancel(agent_id, reason="user")
    except UnknownAgentError as exc:
        raise ApiError(404, "agent_not_found", str(exc)) from None
    return CancelAccepted(fanout_id=fanout_id, agent_id=agent_id, cancelled=cancelled)


# ``exclude_unset``: an agent's summary holds the fields of its state only (``stop_reason``
# when done, ``code`` and ``message`` on error, ...), not every field as null.
@router.get(
    "/{fanout_id}",
    response_model=FanOutSummary,
    response_model_exclude_unset=True,
    responses=error_responses(404, 410, 503),
)
async def get_fanout(fanout_id: str, state: State) -> dict[str, Any]:
    """State, options and per-agent summary of a fan-out."""
    return (await find(state, fanout_id)).summary()


@router.get(
    "",
    response_model=FanOutList,
    response_model_exclude_unset=True,
    responses=error_responses(422, 503),
)
async def list_fanouts(
    state: State, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> dict[str, Any]:
    """Recent fan-outs (running and retained), newest first."""
    return {"fanouts": await state.require_hub().listing(limit)}
