"""``/healthz`` says what went wrong with the Letta server, in words.

Before, a health check that timed out said ``TimeoutError: `` and nothing else, and an
error wrapping another showed only the outer, often generic, text.
"""

from __future__ import annotations

import socket
from typing import Any

import anyio
import httpx

from api import ApiSettings, create_app

from .conftest import open_api


class _Directory:
    """Stands in for the Letta directory: ``list_agents`` does what the test says."""

    def __init__(self, fail: BaseException | None = None, *, stall: bool = False) -> None:
        self.fail = fail
        self.stall = stall

    async def list_agents(self) -> list[Any]:
        if self.stall:
            await anyio.sleep_forever()
        assert self.fail is not None
        raise self.fail


async def _health(directory: _Directory, **settings: Any) -> dict[str, Any]:
    async with open_api(ApiSettings(**settings)) as api:
        api.app.state.api.directory = directory
        response = await api.client.get("/healthz")
    assert response.status_code == 200
    health: dict[str, Any] = response.json()
    assert health["status"] == "degraded"
    assert health["letta"]["ok"] is False
    return health


async def test_a_timeout_says_how_long_it_waited() -> None:
    health = await _health(_Directory(stall=True), health_timeout_s=0.05)
    assert health["letta"]["error"] == (
        "TimeoutError: the agent directory (the Letta server) did not answer within 0.05 s"
    )


async def test_an_error_without_text_says_so() -> None:
    health = await _health(_Directory(ConnectionResetError()))
    assert health["letta"]["error"] == "ConnectionResetError (no message)"


async def test_the_cause_of_a_wrapped_error_is_shown() -> None:
    class APIConnectionError(Exception):
        pass

    try:
        try:
            raise OSError("All connection attempts failed")
        except OSError as inner:
            raise APIConnectionError("Connection error.") from inner
    except APIConnectionError as outer:
        error = outer
    health = await _health(_Directory(error))
    assert health["letta"]["error"] == (
        "APIConnectionError: Connection error. (OSError: All connection attempts failed)"
    )


async def test_a_letta_server_that_refuses_connections_is_named_once() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        app = create_app(ApiSettings(letta_base_url=url))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                health = (await c.get("/healthz")).json()
    error = health["letta"]["error"]
    assert "All connection attempts failed" in error
    assert error.count("All connection attempts failed") == 1, error
    assert url in error


async def test_a_directory_error_in_agents_is_a_named_502() -> None:
    async with open_api() as api:
        api.app.state.api.directory = _Directory(TimeoutError())
        response = await api.client.get("/v1/agents")
    assert response.status_code == 502
    assert response.json()["error"] == {
        "code": "directory_unavailable",
        "message": "could not list agents: TimeoutError (no message)",
    }
