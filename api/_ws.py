"""``WS /v1/ws``: several fan-outs over one WebSocket.

Client frames (JSON text)::

    {"type": "start", "request_id"?: str, "agents": [...], "message": str, "options": {...}}
    {"type": "start", "request_id"?: str, "session_id": str, "message": str, "options": {...}}

A start frame may add ``"coalesce_ms": N`` (0 to 10 000): the fan-out's events then come in
delivery windows that merge text deltas, as ``?coalesce_ms=N`` does on the SSE endpoints.
    {"type": "cancel", "fanout_id": str, "agent_id"?: str, "request_id"?: str}

Server frames: every event of the fan-outs started on this socket (the same JSON as SSE
``data:``), plus ``{"type": "ack", "action": "start"|"cancel", "request_id", "fanout_id",
...}`` and ``{"type": "error", "code", "message", "request_id"?}``. A malformed frame gets
an error frame; the socket stays open. Closing the socket counts as a disconnect for every
fan-out started on it (cancelled unless ``on_disconnect`` is ``continue``).

Frames are strict JSON both ways (orjson): ``NaN``, ``Infinity``, numbers out of range and
nesting deeper than 1024 levels are ``invalid_json``, and nothing the server sends can hold
them. A lone surrogate is ``invalid_request`` naming its field, as over REST.
``request_id`` is echoed when it is a string of valid text.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import anyio
import orjson
from anyio.abc import TaskGroup
from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from orchestrator import ConversationBusyError, HubFanOut, UnknownAgentError, text_problem

from ._auth import key_matches
from ._delivery import event_batches
from ._errors import ApiError, describe_validation, printable
from ._json import dumps, event_json
from ._models import CancelFrame, StartFrame
from ._sessions import busy_body, get_sessions, start_session_fanout
from ._state import ApiState, find, get_state, launch

logger = logging.getLogger("api")

router = APIRouter()

# RFC 6455 close codes: policy violation (refused before accept: uvicorn answers 403) and
# "try again later" (a client too slow to take its frames).
_POLICY_VIOLATION = 1008
_TRY_AGAIN_LATER = 1013


class _Session:
    """One socket: a send lock, the fan-outs started on it, their forwarders."""

    def __init__(self, websocket: WebSocket, state: ApiState, tg: TaskGroup) -> None:
        self.websocket = websocket
        self.state = state
        self.tg = tg
        self.lock = anyio.Lock()
        self.too_slow = False

    async def send(self, text: str) -> None:
        """Send one frame; a client that does not take it in time is dropped."""
        async with self.lock:
            with anyio.move_on_after(self.state.settings.send_timeout_s) as scope:
                await self.websocket.send_text(text)
        if scope.cancelled_caught:
            self.too_slow = True
            self.tg.cancel_scope.cancel()

    async def send_json(self, obj: dict[str, Any]) -> None:
        await self.send(dumps(obj))

    async def error(self, code: str, message: str, request_id: Any = None, **extra: Any) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if request_id is not None:
            frame["request_id"] = request_id
        frame.update(extra)
        await self.send_json(frame)

    async def handle(self, raw: str | bytes | None) -> None:
        try:
            frame = _loads(raw)
        except ValueError as exc:
            await self.error("invalid_json", f"frame is not valid JSON: {exc}")
            return
        if not isinstance(frame, dict):
            await self.error("invalid_frame", "a frame must be a JSON object")
            return
        request_id = _echoable(frame.get("request_id"))
        kind = frame.get("type")
        try:
            if kind == "start":
                await self._start(StartFrame.model_validate(frame))
            elif kind == "cancel":
                await self._cancel(CancelFrame.model_validate(frame))
            else:
                await self.error(
                    "unknown_frame_type",
                    f"frame type must be 'start' or 'cancel', got {_preview(kind)}",
                    request_id,
                )
        except ValidationError as exc:
            summary, details = describe_validation(exc.errors())
            await self.error("invalid_request", summary, request_id, details=details)
        except ApiError as exc:
            await self.error(exc.code, exc.message, request_id)
        except ConversationBusyError as exc:
            error = busy_body(exc)["error"]
            await self.error(error["code"], error["message"], request_id, agents=error["agents"])
        except (WebSocketDisconnect, OSError):
            raise
        except Exception:
            # A bug met by one frame must not end the other fan-outs of this socket.
            logger.exception("WebSocket frame of type %s failed", _preview(kind))
            await self.error(
                "internal_error", "the server failed to handle this frame (see its log)", request_id
            )

    async def _start(self, frame: StartFrame) -> None:
        if frame.session_id is not None:
            entry = await start_session_fanout(
                self.state,
                get_sessions(self.websocket),
                frame.session_id,
                frame.message,
                frame.options,
                streaming=True,
                transport="websocket",
            )
        else:
            entry = await launch(self.state, frame, streaming=True, transport="websocket")
        await self.send_json(
            {
                "type": "ack",
                "action": "start",
                "request_id": frame.request_id,
                "fanout_id": entry.fanout_id,
            }
        )
        coalesce_s = frame.coalesce_ms / 1000
        self.tg.start_soon(self._forward, entry, coalesce_s, name=f"ws:{entry.fanout_id}")

    async def _cancel(self, frame: CancelFrame) -> None:
        entry = await find(self.state, frame.fanout_id)
        try:
            cancelled = entry.cancel(frame.agent_id, reason="user")
        except UnknownAgentError as exc:
            raise ApiError(404, "agent_not_found", str(exc)) from None
        await self.send_json(
            {
                "type": "ack",
                "action": "cancel",
                "request_id": frame.request_id,
                "fanout_id": frame.fanout_id,
                "agent_id": frame.agent_id,
                "cancelled": cancelled,
            }
        )

    async def _forward(self, entry: HubFanOut, coalesce_s: float = 0.0) -> None:
        async with entry.watch() as sub:
            # One frame per event; with a delivery window, the window's merged events.
            async for batch in event_batches(sub, coalesce_s):
                for event, _ in batch:
                    await self.send(event_json(event))


def _loads(raw: str | bytes | None) -> Any:
    """Parse a frame strictly; raises ``ValueError`` (orjson's, or naming what is refused).

    orjson refuses a lone surrogate while parsing, so the client would learn only a position.
    Such a frame is parsed again by the standard library, just as strictly otherwise
    (no NaN or Infinity, no number out of range, bounded nesting), so that validation can
    name the field that holds the surrogate.
    """
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "surrogate" not in str(exc) or not isinstance(raw, str):
            raise
        try:
            return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
        except RecursionError:
            raise ValueError("nested too deeply") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _echoable(request_id: Any) -> str | None:
    # Only a string of valid text goes back: anything else could not be written as JSON
    # (a lone surrogate) or is not what the protocol echoes.
    if isinstance(request_id, str) and text_problem(request_id, name=True) is None:
        return request_id
    return None


def _preview(value: Any, limit: int = 60) -> str:
    # Never repr() a container: a frame may nest 1024 levels, deeper than repr() can go.
    if isinstance(value, str):
        text = printable(repr(value[:limit]))
        return text + "..." if len(value) > limit else text
    if isinstance(value, list | dict):
        return "an array" if isinstance(value, list) else "an object"
    return printable(repr(value))


@router.websocket("/v1/ws")
async def fanout_socket(websocket: WebSocket) -> None:
    """Run fan-outs over one WebSocket (see the module docstring for the frames)."""
    state = get_state(websocket)
    if not key_matches(state.settings.api_key, websocket):
        await websocket.close(_POLICY_VIOLATION, "missing or wrong API key")
        return
    await websocket.accept()
    async with anyio.create_task_group() as tg:
        session = _Session(websocket, state, tg)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await session.handle(message.get("text") or message.get("bytes"))
        except WebSocketDisconnect:
            pass
        finally:
            # Forwarders stop; leaving their watch() applies each fan-out's on_disconnect.
            tg.cancel_scope.cancel()
    if session.too_slow:
        with anyio.move_on_after(1):
            await websocket.close(_TRY_AGAIN_LATER, "client too slow")
