"""Fixtures for the API tests: the app in-process, and served by a real uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from httpx_sse import aconnect_sse

from api import ApiSettings, create_app
from orchestrator import Event, ScriptedDirectory
from tests._servers import serve_app

from .scripted import directory as scripted_directory


@dataclass
class Api:
    """An app with its lifespan running, an httpx client for it, and its directory."""

    app: FastAPI
    client: httpx.AsyncClient
    directory: ScriptedDirectory


@asynccontextmanager
async def open_api(settings: ApiSettings | None = None) -> AsyncIterator[Api]:
    """The app in-process (httpx ``ASGITransport``; responses arrive whole)."""
    directory = scripted_directory()
    app = create_app(settings or ApiSettings(), directory)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield Api(app, client, directory)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with open_api() as value:
        yield value


@dataclass
class Live:
    """A real uvicorn serving the app on a loopback port, in this process."""

    app: FastAPI
    base_url: str
    directory: ScriptedDirectory

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/v1/ws"


@asynccontextmanager
async def serve_live(settings: ApiSettings | None = None) -> AsyncIterator[Live]:
    """Serve a fresh app with uvicorn on an ephemeral port until the block ends."""
    directory = scripted_directory()
    app = create_app(settings or ApiSettings(), directory)
    async with serve_app(app) as base_url:
        yield Live(app, base_url, directory)


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    async with serve_live() as value:
        yield value


async def read_sse(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: object
) -> tuple[httpx.Response, list[Event]]:
    """Read a whole SSE response with httpx-sse; every ``data:`` parsed as an Event."""
    events: list[Event] = []
    async with aconnect_sse(client, method, url, **kwargs) as source:
        response = source.response
        if response.status_code != 200:
            await response.aread()
            return response, events
        async for sse in source.aiter_sse():
            event = Event.from_json(sse.data)
            assert sse.event == event.type
            assert sse.id == str(event.index)
            events.append(event)
    return response, events
