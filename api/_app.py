"""The app factory: :func:`create_app` wires settings, a directory and the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from starlette.middleware.trustedhost import TrustedHostMiddleware

import orchestrator
from orchestrator import (
    AgentDirectory,
    Checkpoint,
    ConfigError,
    FanOutHub,
    LettaConnection,
    LettaDirectory,
    Source,
    open_hub,
    open_redis_hub,
)

from . import _agui, _aisdk, _arena, _fanouts, _page, _sessions, _system, _tokens, _ws
from ._auth import authorized
from ._errors import install_error_handlers
from ._guard import QUERY_TOKEN, Guard, is_public, is_streaming
from ._logs import install_log_redaction
from ._metrics import ApiMetrics
from ._settings import ApiSettings
from ._state import ApiState

_DESCRIPTION = """\
Fan one message out to several Letta agents and stream their answers back as ONE merged,
tagged event stream (schema `Event`), over Server-Sent Events or a WebSocket.

Errors are JSON: `{"error": {"code": ..., "message": ...}}`. With an API key configured,
send `Authorization: Bearer <key>`; `EventSource` and `WebSocket` clients send
`?access_token=<stream token>` instead (`POST /v1/stream-tokens`), so the key stays out of
URLs. Pages of other web origins are refused unless allowed; see `docs/security.md`.
"""


def create_app(
    settings: ApiSettings | None = None, directory: AgentDirectory | None = None
) -> FastAPI:
    """Build the API app.

    ``directory`` turns agent references into sources: a ``ScriptedDirectory`` in tests and
    demos; when omitted, a ``LettaDirectory`` for ``settings.letta_base_url`` is created at
    startup (and closed at shutdown). Fan-outs run in a hub owned by the app's lifespan, so
    serve the app with a server that runs the lifespan (uvicorn does). Extend the app with
    ``app.include_router(...)``.
    """
    settings = settings or ApiSettings()
    state = ApiState(settings=settings, directory=_Deferred(), metrics=ApiMetrics())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = directory is None
        state.directory = directory if directory is not None else _letta_directory(settings)
        try:
            async with _open_hub(settings, state) as hub:
                state.hub = hub
                state.metrics.bind(hub)
                try:
                    async with (
                        _sessions.serve_sessions(app, state),
                        _arena.serve_votes(app, state),
                    ):
                        yield
                finally:
                    state.hub = None
        finally:
            if owned:
                await state.directory.aclose()

    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from files the package
    # ships, not from a CDN (the docs work offline, and no third party sees who reads them).
    app = FastAPIOffline(
        title="letta-fanout",
        version="0.1.0",
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.api = state
    secret = settings.token_secret.encode() if settings.token_secret else None
    app.state.stream_tokens = _tokens.StreamTokens(secret, settings.stream_token_ttl_s)
    if directory is not None:
        state.directory = directory
    install_error_handlers(app)
    _sessions.install_busy_handler(app)
    protected = [Depends(authorized)]
    app.include_router(_fanouts.router, dependencies=protected)
    # Frontend protocols: AG-UI for a whole fan-out, the AI SDK's stream per agent.
    app.include_router(_agui.router, dependencies=protected)
    app.include_router(_aisdk.router, dependencies=protected)
    if directory is None or isinstance(directory, LettaDirectory):
        # Sessions are Letta conversations: a server of scripted agents has none.
        app.include_router(_sessions.router, dependencies=protected)
    app.include_router(_arena.router, dependencies=protected)
    app.include_router(_system.router, dependencies=protected)
    app.include_router(_system.open_router)
    app.include_router(_tokens.router, dependencies=protected)
    app.include_router(_ws.router)
    _include_page(app)
    _system.install_openapi(app)
    _document_security(app)
    install_log_redaction()
    # Outermost last: the Host check, then CORS (so a browser can read a 401 on an
    # allowed origin), then the guard (Origin, key, body size) right before the routes.
    app.add_middleware(Guard, settings=settings, tokens=app.state.stream_tokens)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            expose_headers=["X-Fanout-Id", "Location", "Retry-After"],
        )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts())
    return app


def _document_security(app: FastAPI) -> None:
    # Protected operations already name the bearer scheme (the ``authorized`` dependency);
    # the streaming ones also take a stream token in the query.
    build = app.openapi

    def openapi() -> dict[str, Any]:
        doc = build()
        schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[_STREAM_TOKEN] = {
            "type": "apiKey",
            "in": "query",
            "name": QUERY_TOKEN,
            "description": "A stream token from `POST /v1/stream-tokens` (EventSource).",
        }
        for path, operations in doc.get("paths", {}).items():
            for method, operation in operations.items():
                security = operation.get("security")
                if is_public(path) or not security:
                    continue
                scope = {"type": "http", "method": method.upper(), "path": path}
                if is_streaming(scope) and {_STREAM_TOKEN: []} not in security:
                    security.append({_STREAM_TOKEN: []})
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


_STREAM_TOKEN = "streamToken"


def _include_page(app: FastAPI) -> None:
    app.include_router(_page.page_router)


def _open_hub(settings: ApiSettings, state: ApiState) -> AbstractAsyncContextManager[FanOutHub]:
    # In memory by default; with a Redis URL, the hub every replica shares (docs/deployment.md).
    common: dict[str, Any] = {
        "max_active": settings.max_active_fanouts,
        "retention_s": settings.retention_s,
        "max_events": settings.max_log_events,
        "max_retained": settings.max_retained_fanouts,
        "retry_after_s": settings.retry_after_s,
    }
    url = settings.resolved_redis_url()
    if url is None:
        return open_hub(**common)

    async def revive(checkpoint: Checkpoint) -> Source | None:
        # A dead replica's agents continue through this replica's directory (its Letta
        # client and credentials: nothing secret is stored in Redis).
        reviver = getattr(state.directory, "revive", None)
        if reviver is None:
            return None
        source: Source | None = await reviver(checkpoint)
        return source

    return open_redis_hub(
        url,
        lease_s=settings.lease_s,
        replica_id=settings.replica_id,
        max_connections=settings.redis_max_connections,
        revive=revive,
        **common,
    )


def _letta_directory(settings: ApiSettings) -> AgentDirectory:
    if not settings.letta_base_url:
        raise ConfigError("no agent directory given: set the Letta base URL (LETTA_BASE_URL)")
    background = settings.letta_background
    if background is None:
        background = settings.resolved_redis_url() is not None
    connection = LettaConnection(
        base_url=settings.letta_base_url,
        api_key=settings.letta_token,
        max_connections=settings.letta_max_connections,
        background=background,
    )
    return LettaDirectory(connection=connection)


class _Deferred:
    """Stands in for the directory until the lifespan has created it."""

    async def list_agents(self) -> list[orchestrator.AgentInfo]:
        raise ConfigError("the server is starting: no agent directory yet")

    async def sources(self, refs: object) -> list[orchestrator.Source]:
        raise ConfigError("the server is starting: no agent directory yet")

    async def aclose(self) -> None:
        return None
