"""From Letta's streamed messages and errors to the protocol's source events.

A Letta stream (``agents.messages.create(..., streaming=True)``) yields typed messages keyed
by ``message_type``. :class:`LettaMapper` turns one run's messages into
:class:`~orchestrator.SourceEvent` objects; :func:`classify_error` turns an exception of the
SDK (or of httpx underneath it) into a :class:`~orchestrator.SourceError` with a stable
``code``. Both are pure: no I/O, so unit tests feed them SDK objects directly.

Stable error codes: ``agent_not_found``, ``bad_request``, ``unauthorized``, ``forbidden``,
``conflict``, ``rate_limited``, ``server_error``, ``unavailable`` (unreachable, or the
connection broke mid-stream), ``timeout``, ``stream_incomplete``, ``protocol_error``,
``llm_error``, ``llm_rate_limited``, ``llm_timeout``, ``llm_auth``, ``tool_error``,
``context_overflow``, ``insufficient_credits``, ``cancelled_on_server``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import httpx
import letta_client

from .._core._events import SourceEvent
from .._core._exceptions import SourceError
from .._core._types import JSON

__all__ = ["ERROR_STOP_REASONS", "LettaMapper", "classify_error", "error_event"]

#: Stop reasons that mean the run failed: stop reason -> (code, retryable).
ERROR_STOP_REASONS: Mapping[str, tuple[str, bool]] = {
    "error": ("server_error", True),
    "llm_api_error": ("llm_error", True),
    "invalid_llm_response": ("llm_error", True),
    "invalid_tool_call": ("tool_error", False),
    "insufficient_credits": ("insufficient_credits", False),
    "context_window_overflow_in_system_prompt": ("context_overflow", False),
    # Someone else cancelled the run on the server; our own cancel never reads this far.
    "cancelled": ("cancelled_on_server", False),
}

# Letta's ``error_type`` of an error event -> (code, retryable).
_ERROR_TYPES: Mapping[str, tuple[str, bool]] = {
    "llm_error": ("llm_error", True),
    "llm_empty_response": ("llm_error", True),
    "llm_rate_limit": ("llm_rate_limited", True),
    "llm_timeout": ("llm_timeout", True),
    "llm_authentication": ("llm_auth", False),
    "context_window_overflow_in_system_prompt": ("context_overflow", False),
    "internal_error": ("server_error", True),
    "stream_incomplete": ("stream_incomplete", True),
    "stream_task_cancelled": ("cancelled_on_server", False),
}

# HTTP status -> (code, retryable), for errors before the stream starts.
_HTTP_STATUS: Mapping[int, tuple[str, bool]] = {
    400: ("bad_request", False),
    401: ("unauthorized", False),
    403: ("forbidden", False),
    404: ("agent_not_found", False),
    409: ("conflict", True),
    422: ("bad_request", False),
    429: ("rate_limited", True),
    502: ("unavailable", True),
    503: ("unavailable", True),
    504: ("unavailable", True),
}


def error_event(code: str, message: str, *, retryable: bool) -> SourceEvent:
    """An ``agent_error`` source event."""
    return SourceEvent("agent_error", {"code": code, "message": message, "retryable": retryable})


def _error_from_body(body: Mapping[str, Any], fallback: str) -> SourceError | None:
    # An SSE ``event: error`` carries a LettaErrorMessage: error_type, message, detail.
    nested = body.get("error")
    inner: Mapping[str, Any] = nested if isinstance(nested, Mapping) else body
    error_type = inner.get("error_type")
    if not isinstance(error_type, str):
        return None
    code, retryable = _ERROR_TYPES.get(error_type, ("server_error", True))
    message = str(inner.get("message") or fallback)
    detail = inner.get("detail")
    if detail:
        message = f"{message} ({detail})"
    return SourceError(message, code=code, retryable=retryable)


def classify_error(exc: BaseException, *, agent_id: str | None = None) -> SourceError:
    """Turn an exception from the Letta SDK (or httpx) into a :class:`SourceError`.

    ``agent_id`` makes the messages name the agent. Exceptions that are not about talking
    to Letta become code ``source_error``.
    """
    who = f"agent {agent_id!r}" if agent_id else "the agent"
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, letta_client.APITimeoutError):
        return SourceError(
            f"the Letta server did not answer in time ({who})", code="timeout", retryable=True
        )
    if isinstance(exc, letta_client.APIConnectionError):
        url = exc.request.url if _has_request(exc) else "?"
        cause = exc.__cause__ or exc
        return SourceError(
            f"cannot reach the Letta server at {url}: {type(cause).__name__}: {cause}",
            code="unavailable",
            retryable=True,
        )
    if isinstance(exc, letta_client.APIStatusError):
        body = exc.body
        if isinstance(body, Mapping):
            from_body = _error_from_body(body, str(exc))
            if from_body is not None:
                return from_body
        status = exc.status_code
        detail = _detail(body) or exc.message
        if status == 404:
            return SourceError(
                f"{who} not found on the Letta server: {detail}",
                code="agent_not_found",
                retryable=False,
            )
        code, retryable = _HTTP_STATUS.get(
            status, ("server_error", True) if status >= 500 else ("bad_request", False)
        )
        return SourceError(
            f"Letta server answered {status} for {who}: {detail}", code=code, retryable=retryable
        )
    if isinstance(exc, letta_client.APIResponseValidationError | ValueError):
        return SourceError(
            f"unexpected data from the Letta server: {exc}", code="protocol_error", retryable=False
        )
    if isinstance(exc, httpx.TimeoutException):
        return SourceError(
            f"the Letta stream of {who} timed out: {type(exc).__name__}",
            code="timeout",
            retryable=True,
        )
    if isinstance(exc, httpx.TransportError):
        # A connection that breaks mid-stream (peer closed before the end of the body, reset)
        # is what a Letta server that crashed or was restarted produces: to the caller that
        # is the server being unavailable, the same code as when it cannot be reached at all
        # (verified by killing the real server mid-stream, tests/letta/test_fault_letta_killed).
        return SourceError(
            f"the Letta server stopped serving the stream of {who}: {type(exc).__name__}: {exc}",
            code="unavailable",
            retryable=True,
        )
    return SourceError(f"{type(exc).__name__}: {exc}", code="source_error", retryable=False)


def _has_request(exc: letta_client.APIConnectionError) -> bool:
    try:
        return exc.request is not None
    except RuntimeError:  # httpx raises when an exception has no request attached
        return False


def _detail(body: object) -> str | None:
    if isinstance(body, Mapping):
        for key in ("detail", "message", "error"):
            value = body.get(key)
            if value:
                return value if isinstance(value, str) else json.dumps(value)
    if isinstance(body, str) and body:
        return body
    return None


@dataclass
class _PendingCall:
    tool_call_id: str
    name: str = ""
    arguments: str = ""
    requires_approval: bool = False


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(_field(part, "text") or "") for part in content)
    return ""


def _field(obj: object, name: str) -> Any:
    # Wire JSON gives dicts; callers that still hold SDK objects give attributes.
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _as_data(item: object) -> Mapping[str, Any]:
    if isinstance(item, Mapping):
        return item
    dump = getattr(item, "model_dump", None)
    if callable(dump):  # a letta_client (pydantic) message
        return cast("Mapping[str, Any]", dump())
    return vars(item) if hasattr(item, "__dict__") else {}


def _arguments(raw: str) -> object:
    # Letta sends arguments as a JSON string; events carry the decoded object when it is one.
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return raw


# SourceEvent is a NamedTuple: tuple.__new__ skips its keyword-handling constructor on the
# per-token path (the same trick the merger uses for Event).
_new_source_event = tuple.__new__


class LettaMapper:
    """Maps the streamed messages of one Letta run to source events.

    Feed every stream item to :meth:`feed` and yield what it returns; when the stream ends
    yield :meth:`finish`; when it raises, yield :meth:`fail`; for an SSE ``event: error``
    frame yield :meth:`error_frame`. Items are the wire JSON objects (dicts, the fast path
    :class:`~orchestrator.LettaSource` uses) or ``letta_client`` message objects. ``run_id``
    is known from the first ``ping`` (or any message that carries it). Tool call deltas are
    joined and emitted as one ``tool_call`` once complete (at the next message of another
    kind).
    """

    __slots__ = (
        "_calls",
        "_last_call",
        "_server_error",
        "content_chars",
        "error",
        "run_id",
        "started",
        "stop_reason",
    )

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.stop_reason: str | None = None
        self.error: SourceError | None = None
        self.started = False
        self.content_chars = 0
        self._server_error = False
        self._calls: dict[str, _PendingCall] = {}
        self._last_call: str | None = None

    @property
    def ended(self) -> bool:
        """True once the server said the run is over (a stop reason or an error event).

        A broken connection does not end the run: the server may still be running it.
        """
        return self.stop_reason is not None or self._server_error

    def feed(self, item: object) -> list[SourceEvent]:
        """The source events for one stream item (often none or one)."""
        data = item if type(item) is dict else _as_data(item)
        get = data.get
        kind = get("message_type")
        if kind == "assistant_message" and self.run_id is not None and not self._calls:
            # Hot path, one per answer token: run known, no tool call to flush first.
            delta = get("content")
            if type(delta) is not str:
                delta = _text(delta)
            if not delta:
                return []
            self.content_chars += len(delta)
            message_id = get("otid") or get("id")
            return [
                _new_source_event(
                    SourceEvent, ("content", {"delta": delta, "message_id": message_id})
                )
            ]
        return self._feed_other(kind, data)

    def _feed_other(self, kind: object, data: Mapping[str, Any]) -> list[SourceEvent]:
        get = data.get
        out: list[SourceEvent] = []
        run_id = get("run_id")
        if isinstance(run_id, str) and run_id and self.run_id is None:
            self.run_id = run_id
        if not self.started and (self.run_id is not None or kind == "ping"):
            self.started = True
            out.append(SourceEvent("agent_start", {"run_id": self.run_id}))
        if kind == "ping":
            # Keepalive pings come at any time (between a tool call's deltas too) and are not
            # part of a background run's stored stream: they must not change what a replay
            # of the run maps to, so they flush nothing.
            return out
        if kind in ("tool_call_message", "approval_request_message"):
            self._add_call(data, requires_approval=kind == "approval_request_message")
            return out
        if self._calls:
            out.extend(self._flush_calls())
        message_id = get("otid") or get("id")
        if kind == "assistant_message":
            delta = _text(get("content"))
            if delta:
                self.content_chars += len(delta)
                out.append(SourceEvent.content(delta, message_id))
        elif kind == "reasoning_message":
            delta = get("reasoning") or ""
            if delta:
                out.append(SourceEvent.reasoning(delta, message_id))
        elif kind == "hidden_reasoning_message":
            hidden = get("hidden_reasoning") or ""
            if hidden:
                out.append(SourceEvent.reasoning(hidden, message_id))
        elif kind == "tool_return_message":
            out.append(
                SourceEvent(
                    "tool_result",
                    {
                        "tool_call_id": get("tool_call_id"),
                        "status": get("status"),
                        "result": get("tool_return"),
                    },
                )
            )
        elif kind == "usage_statistics":
            out.append(
                SourceEvent(
                    "usage",
                    {
                        "prompt_tokens": get("prompt_tokens") or 0,
                        "completion_tokens": get("completion_tokens") or 0,
                        "total_tokens": get("total_tokens") or 0,
                        "step_count": get("step_count") or 0,
                    },
                )
            )
        elif kind == "stop_reason":
            self.stop_reason = str(get("stop_reason") or "end_turn")
        elif kind == "error_message":
            body = {
                "error_type": get("error_type") or "internal_error",
                "message": get("message") or "",
                "detail": get("detail"),
            }
            self.error = _error_from_body(body, "the Letta run failed")
            self._server_error = True
        # ping, user_message, system_message, approval responses: nothing to show.
        return out

    def fail(self, exc: BaseException, *, agent_id: str | None = None) -> list[SourceEvent]:
        """The events that end a stream that raised ``exc`` (pending calls, then the error)."""
        from_server = self._is_error_event(exc)
        return self._end_with(classify_error(exc, agent_id=agent_id), from_server=from_server)

    def error_frame(self, data: str) -> list[SourceEvent]:
        """The events that end a stream at an SSE ``event: error`` frame (its ``data`` text).

        Letta sends one when the run fails after the response started (status 200); the
        ``letta_client`` SDK raises it as ``APIStatusError`` with the JSON as its body.
        """
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        if isinstance(body, Mapping):
            error = _error_from_body(body, data) or SourceError(
                f"the Letta server reported an error: {data}", code="server_error", retryable=True
            )
            return self._end_with(error, from_server=True)
        error = SourceError(
            f"the Letta server reported an error: {data or '(empty)'}",
            code="server_error",
            retryable=True,
        )
        return self._end_with(error, from_server=False)

    def _end_with(self, error: SourceError, *, from_server: bool) -> list[SourceEvent]:
        self._server_error = self._server_error or from_server
        if from_server and self.error is not None:
            error = self.error  # an error_message item said more than the frame that ended it
        if from_server and error.code == "server_error" and self.stop_reason:
            # Letta reports a mid-stream model failure as internal_error after a stop reason
            # of llm_api_error; the stop reason is the more specific of the two.
            code, retryable = ERROR_STOP_REASONS.get(self.stop_reason, (error.code, True))
            error = SourceError(error.message, code=code, retryable=retryable)
        self.error = error
        return [
            *self._flush_calls(),
            error_event(error.code, error.message, retryable=error.retryable),
        ]

    def finish(self) -> list[SourceEvent]:
        """The events that end a stream that ended by itself (pending calls, the terminal)."""
        out = self._flush_calls()
        if self.error is not None:
            out.append(
                error_event(self.error.code, self.error.message, retryable=self.error.retryable)
            )
        elif self.stop_reason is None:
            out.append(
                error_event(
                    "stream_incomplete",
                    "the Letta stream ended without a stop reason",
                    retryable=True,
                )
            )
        elif self.stop_reason in ERROR_STOP_REASONS:
            code, retryable = ERROR_STOP_REASONS[self.stop_reason]
            out.append(
                error_event(
                    code, f"the Letta run stopped with {self.stop_reason}", retryable=retryable
                )
            )
        else:
            out.append(SourceEvent("agent_done", {"stop_reason": self.stop_reason}))
        return out

    @staticmethod
    def _is_error_event(exc: BaseException) -> bool:
        return isinstance(exc, letta_client.APIStatusError) and isinstance(exc.body, Mapping)

    def _add_call(self, data: Mapping[str, Any], *, requires_approval: bool) -> None:
        call = data.get("tool_call")
        calls = data.get("tool_calls")
        parts = calls if isinstance(calls, list) and calls else [call] if call else []
        for part in parts:
            # Deltas after the first may omit the id: they continue the call before them.
            call_id = str(
                _field(part, "tool_call_id")
                or self._last_call
                or data.get("otid")
                or data.get("id")
                or "call"
            )
            pending = self._calls.get(call_id)
            if pending is None:
                pending = self._calls[call_id] = _PendingCall(call_id)
            pending.requires_approval = pending.requires_approval or requires_approval
            name = _field(part, "name")
            if name and not pending.name:
                pending.name = name
            pending.arguments += _field(part, "arguments") or ""
            self._last_call = call_id

    def _flush_calls(self) -> list[SourceEvent]:
        out: list[SourceEvent] = []
        if not self._calls:
            return out
        for pending in self._calls.values():
            data: JSON = {
                "name": pending.name,
                "arguments": _arguments(pending.arguments),
                "tool_call_id": pending.tool_call_id,
            }
            if pending.requires_approval:
                data["requires_approval"] = True
            out.append(SourceEvent("tool_call", data))
        self._calls.clear()
        self._last_call = None
        return out
