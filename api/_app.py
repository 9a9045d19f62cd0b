"""The app factory: :func:`create_app` wires settings, a directory and the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware

import orchestrator
from orchestrator import AgentDirectory, ConfigError, LettaConnection, LettaDirectory, open_hub

from . import _fanouts, _page, _system, _ws
from ._auth import require_key
from ._errors import install_error_handlers
from ._metrics import ApiMetrics
from ._settings import ApiSettings
from ._state import ApiState, get_state

_DESCRIPTION = """\
Fan one message out to several Letta agents and stream their answers back as ONE merged,
tagged event stream (schema `Event`), over Server-Sent Events or a WebSocket.

Errors are JSON: `{"error": {"code": ..., "message": ...}}`. With an API key configured,
send `Authorization: Bearer <key>` (or `?access_token=` for EventSource and WebSocket).
"""


async def _authorized(request: Request) -> None:
    require_key(get_state(request).settings.api_key, request)


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
            async with open_hub(
                max_active=settings.max_active_fanouts,
                retention_s=settings.retention_s,
                max_events=settings.max_log_events,
                max_retained=settings.max_retained_fanouts,
                retry_after_s=settings.retry_after_s,
            ) as hub:
                state.hub = hub
                state.metrics.bind(hub)
                try:
                    yield
                finally:
                    state.hub = None
        finally:
            if owned:
                await state.directory.aclose()

    app = FastAPI(
        title="letta-fanout",
        version="0.1.0",
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.api = state
    if directory is not None:
        state.directory = directory
    install_error_handlers(app)
    protected = [Depends(_authorized)]
    app.include_router(_fanouts.router, dependencies=protected)
    app.include_router(_system.router, dependencies=protected)
    app.include_router(_system.open_router)
    app.include_router(_ws.router)
    _include_page(app)
    _system.install_openapi(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            expose_headers=["X-Fanout-Id", "Location", "Retry-After"],
        )
    return app


def _include_page(app: FastAPI) -> None:
    app.include_router(_page.page_router)


def _letta_directory(settings: ApiSettings) -> AgentDirectory:
    if not settings.letta_base_url:
        raise ConfigError("no agent directory given: set the Letta base URL (LETTA_BASE_URL)")
    connection = LettaConnection(
        base_url=settings.letta_base_url,
        api_key=settings.letta_token,
        max_connections=settings.letta_max_connections,
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
