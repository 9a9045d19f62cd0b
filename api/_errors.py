"""JSON error bodies that name the problem, and the handlers that produce them.

Every error the API returns has the shape ``{"error": {"code": ..., "message": ...}}``
(plus ``details`` for request validation), whatever raised it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from orchestrator import HubUnavailableError

from ._models import ErrorResponse

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    502: "bad_gateway",
    503: "unavailable",
}

_FASTAPI_BODY_ERROR = "There was an error parsing the body"
_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


class ApiError(Exception):
    """An error answered with ``status`` and a JSON body naming ``code`` and ``message``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = details


def printable(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udXXX`` escapes, so any JSON writer
    and UTF-8 encoder can carry it (client input quoted in an error message)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` of an error from a dependency, never with an empty message.

    The causes' texts follow in parentheses (a client error wrapping a connection error);
    an error without any text says so rather than ending in ``": "``.
    """
    text = str(exc).strip()
    out = f"{type(exc).__name__}: {text}" if text else f"{type(exc).__name__} (no message)"
    seen = {id(exc)}
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen and len(seen) < 4:
        seen.add(id(cause))
        cause_text = str(cause).strip()
        if cause_text and cause_text not in out:  # often quoted by the outer error already
            out += f" ({type(cause).__name__}: {cause_text})"
        cause = cause.__cause__ or cause.__context__
    return printable(out)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries: each status answers with an :class:`ErrorResponse`."""
    return {
        status: {"model": ErrorResponse, "description": _STATUS_CODES.get(status, "error")}
        for status in statuses
    }


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The JSON body of an error (also used for WebSocket error frames)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def describe_validation(errors: Any) -> tuple[str, list[dict[str, Any]]]:
    """A one-line summary and JSON-safe details of pydantic validation errors."""
    details: list[dict[str, Any]] = []
    for err in errors:
        # A location may be a key the client sent (an unknown field): quote it safely.
        loc = [printable(str(part)) for part in err.get("loc", ())]
        message = printable(str(err.get("msg", "")))
        details.append({"loc": loc, "msg": message, "type": err.get("type")})
    summary = "; ".join(f"{'.'.join(d['loc']) or 'body'}: {d['msg']}" for d in details)
    return summary or "invalid request", details


def hub_unavailable(exc: HubUnavailableError) -> ApiError:
    """``503 hub_unavailable`` naming the backend (Redis), with ``Retry-After`` (for paths
    that answer with an :class:`ApiError`, the WebSocket's among them)."""
    return ApiError(
        503,
        "hub_unavailable",
        str(exc),
        headers={"Retry-After": str(max(1, round(exc.retry_after_s)))},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Make every error response of ``app`` a JSON error body."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), exc.status, headers=exc.headers
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        summary, details = describe_validation(exc.errors())
        code = "invalid_json" if any(d["type"] == "json_invalid" for d in details) else None
        return JSONResponse(error_body(code or "invalid_request", summary, details), 422)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            return _method_not_allowed(request)
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = str(exc.detail)
        if exc.status_code == 400 and message == _FASTAPI_BODY_ERROR:
            # FastAPI's answer to a body it cannot decode (not UTF-8, nested past the
            # parser's depth): the same problem as malformed JSON, so the same 422 and code.
            why = "request body is not valid JSON (or not UTF-8)"
            if isinstance(exc.__cause__, RecursionError):
                why = "request body is nested too deeply to be parsed"
            return JSONResponse(error_body("invalid_json", why), 422)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no endpoint at {request.url.path}"
        return JSONResponse(error_body(code, message), exc.status_code, headers=exc.headers)

    async def on_hub_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Anywhere a request needs the shared hub (sessions, votes, fan-outs) and Redis is
        # down: a 503 that names Redis, never a 500.
        assert isinstance(exc, HubUnavailableError)
        return await on_api_error(request, hub_unavailable(exc))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(HubUnavailableError, on_hub_unavailable)


def _method_not_allowed(request: Request) -> JSONResponse:
    # Starlette answers from the first route whose path matches, so its ``Allow`` lists only
    # that route's methods; a path served by several routes (GET and POST /v1/fanouts) needs
    # the union, or clients are told a supported method is not. Routers nest, so ask every
    # route whether it fully matches each method rather than reading their method sets.
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]
    listed = ", ".join(allowed)
    message = f"method {request.method} is not allowed on {request.url.path}"
    if listed:
        message += f"; allowed: {listed}"
    return JSONResponse(error_body("method_not_allowed", message), 405, headers={"Allow": listed})
