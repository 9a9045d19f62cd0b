"""The checks every request passes before the app reads a byte of its body.

:class:`Guard` is pure ASGI middleware, so it answers from the request line and headers
alone, without buffering:

1. ``Origin``: a browser names the page that sent a request (always for a WebSocket and
   for a ``POST``). Only the server's own origin and the ``cors_origins`` list may drive
   the API; any other page gets ``403`` (a WebSocket is refused before it is accepted).
   This is what stops another web page from using a server on loopback that has no key.
2. The API key, when one is configured: ``Authorization: Bearer <key>`` everywhere; on
   the streaming endpoints, where a browser cannot send a header (``EventSource``,
   ``WebSocket``), also ``?access_token=`` holding a stream token or the key. ``401``
   otherwise, before the body is read, so an unauthenticated client cannot make the
   server parse anything.
3. The body size: ``413`` when ``Content-Length`` is over ``max_body_bytes``, and the
   body is counted while it streams in (chunked uploads), so no request can make the
   server hold more than the limit.

The ``Host`` check (DNS rebinding) is Starlette's ``TrustedHostMiddleware``, outside this.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, QueryParams
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._settings import ApiSettings
from ._tokens import StreamTokens

__all__ = ["AUTHORIZED", "QUERY_TOKEN", "BodyTooLargeError", "Guard", "origin_allowed"]

#: Set in the scope of a request whose credentials the guard accepted (or when the app
#: has no key); the endpoints' own check (``require_key``) reads it.
AUTHORIZED = "letta_fanout.authorized"

#: The query parameter that carries a stream token (or the key) on streaming endpoints.
QUERY_TOKEN = "access_token"

# Served to anyone: the page and its files (a browser cannot send a key to load them),
# the liveness probe, the API's documentation.
_PUBLIC_PATHS = frozenset(
    {"/", "/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
_PUBLIC_PREFIXES = ("/static/", "/static-offline-docs/")
# Event streams, and one agent's AI SDK stream (``GET .../agents/{id}/ui-message-stream``).
_EVENTS_PATH = re.compile(r"/v1/(?:[^/]+/)+(?:events|ui-message-stream)")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_POLICY_VIOLATION = 1008


class BodyTooLargeError(HTTPException):
    """Raised from ``receive`` when a streamed request body passes ``max_body_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than {limit} bytes")


def is_public(path: str) -> bool:
    """True for the paths served without the API key."""
    return path in _PUBLIC_PATHS or path.startswith(_PUBLIC_PREFIXES)


def is_streaming(scope: Scope) -> bool:
    """True where a browser may not send headers: a WebSocket, ``GET .../events`` or an
    agent's ``GET .../ui-message-stream``."""
    if scope["type"] == "websocket":
        return True
    return scope["method"] == "GET" and _EVENTS_PATH.fullmatch(scope["path"]) is not None


def origin_allowed(origin: str, host: str | None, allowed: Iterable[str]) -> bool:
    """True when a page of ``origin`` may use a server reached as ``host``.

    Allowed: the server's own origin (the ``Origin`` names the ``Host`` the request went
    to; the scheme is not compared, so a TLS proxy that keeps ``Host`` works) and every
    origin of ``allowed`` (``"*"`` allows all).
    """
    listed = {o.rstrip("/").lower() for o in allowed}
    if "*" in listed or origin.rstrip("/").lower() in listed:
        return True
    parts = urlsplit(origin.lower())
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc or host is None:
        return False
    return _netloc(parts.scheme, parts.netloc) == _netloc(parts.scheme, host.lower())


def _netloc(scheme: str, netloc: str) -> str:
    default = ":" + _DEFAULT_PORTS[scheme]
    return netloc[: -len(default)] if netloc.endswith(default) else netloc


class Guard:
    """ASGI middleware: ``Origin``, API key and body size, checked before the app runs."""

    def __init__(self, app: ASGIApp, settings: ApiSettings, tokens: StreamTokens) -> None:
        self.app = app
        self.settings = settings
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is not None and not origin_allowed(
            origin, headers.get("host"), self.settings.cors_origins
        ):
            message = (
                f"requests from the web origin {origin!r} are not allowed; start the server "
                "with --cors-origin to allow a page of another origin"
            )
            await _deny(scope, send, headers, 403, "forbidden_origin", message)
            return
        if self._authorized(scope, headers):
            scope[AUTHORIZED] = True
        elif not is_public(scope["path"]):
            message = "missing or wrong API key: send 'Authorization: Bearer <key>'"
            if is_streaming(scope):
                message += " or '?access_token=<stream token>' (POST /v1/stream-tokens)"
            await _deny(scope, send, headers, 401, "unauthorized", message)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        await self._limited(scope, receive, send, headers)

    def _authorized(self, scope: Scope, headers: Headers) -> bool:
        key = self.settings.api_key
        if key is None:
            return True
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and bearer.strip():
            return _same(bearer.strip(), key)
        if not is_streaming(scope):
            return False
        given = QueryParams(scope.get("query_string", b"")).get(QUERY_TOKEN)
        if not given:
            return False
        return _same(given, key) or self.tokens.allows(given, scope["path"])

    async def _limited(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        limit = self.settings.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            message = f"request body is {declared} bytes, the maximum is {limit}"
            await _deny(scope, send, headers, 413, "payload_too_large", message)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLargeError as exc:
            # Normally the app's error handler answers; this covers a reader outside it.
            if started:
                raise
            await _deny(scope, send, headers, 413, "payload_too_large", str(exc.detail))


def _same(given: str, expected: str) -> bool:
    # Constant time, so the key cannot be guessed byte by byte from response timing.
    return hmac.compare_digest(given.encode(), expected.encode())


async def _deny(
    scope: Scope, send: Send, headers: Headers, status: int, code: str, message: str
) -> None:
    if scope["type"] == "websocket":
        # Before the handshake is accepted: the server answers the upgrade with 403.
        await send({"type": "websocket.close", "code": _POLICY_VIOLATION, "reason": code})
        return
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    response_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        response_headers.append((b"www-authenticate", b"Bearer"))
    if "content-length" in headers or "transfer-encoding" in headers:
        # A body may follow that nobody will read: end the connection rather than take it.
        response_headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})
