"""The app the browser tests serve with uvicorn: the real API over scripted agents.

``uvicorn --factory tests.browser._server:create_app`` serves :func:`create_app`. Around the
app sits :class:`StreamCutter`, a test-only switch that drops the server's open event
streams the way a network failure does (the response never finishes, the connection
closes), so a test can check that the page resumes. It lives here, not in ``api/``: a real
deployment has no such switch.

- ``POST /_test/cut``: drop every open ``/events`` stream; with ``?hold=1`` also answer new
  ones with ``503`` until ``POST /_test/release`` (so the page visibly reconnects).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from api import ApiSettings
from api import create_app as create_api_app
from orchestrator import AgentDirectory

from ._agents import create_directory


class StreamCutter:
    """ASGI middleware: drops open SSE streams on request (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.streams: set[anyio.Event] = set()
        self.held = False
        self.cuts = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/_test/cut" and method == "POST":
            query = parse_qs(scope.get("query_string", b"").decode())
            self.held = query.get("hold", ["0"])[0] == "1"
            dropped = len(self.streams)
            for cut in list(self.streams):
                cut.set()
            self.cuts += 1
            await _json(send, {"dropped": dropped, "held": self.held})
            return
        if path == "/_test/release" and method == "POST":
            self.held = False
            await _json(send, {"held": False})
            return
        if method == "GET" and path.endswith("/events"):
            if self.held:
                await _json(send, {"error": {"code": "held", "message": "held"}}, status=503)
                return
            await self._cuttable(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _cuttable(self, scope: Scope, receive: Receive, send: Send) -> None:
        cut = anyio.Event()
        self.streams.add(cut)
        try:
            async with anyio.create_task_group() as tg:

                async def serve() -> None:
                    await self.app(scope, receive, send)
                    tg.cancel_scope.cancel()

                tg.start_soon(serve)
                await cut.wait()
                # Stop the response mid-body: uvicorn then closes the connection without
                # the final chunk, which the browser sees as a network failure.
                tg.cancel_scope.cancel()
        finally:
            self.streams.discard(cut)


async def _json(send: Send, body: object, status: int = 200) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})


def create_app() -> ASGIApp:
    """The scripted test app (uvicorn ``--factory``)."""
    directory: AgentDirectory = create_directory()
    settings = ApiSettings(ping_s=1.0)
    return StreamCutter(create_api_app(settings, directory))
