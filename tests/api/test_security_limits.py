"""Issue 12, finding 8 (the settings part): ``orchestrator serve`` runs uvicorn with
connection limits and the bounded close, and passes the security settings to the app."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from typer.testing import CliRunner
from websockets.asyncio.client import connect

from api import ApiSettings, create_app
from api._transport import BoundedCloseTransport, create_http_protocol
from orchestrator import ConfigError
from orchestrator.cli import app
from tests._servers import serve_app

from .scripted import directory as scripted_directory

HEAD_TIMEOUT_S = 0.3


def _serve(monkeypatch: pytest.MonkeyPatch, *args: str) -> dict[str, Any]:
    """Run ``orchestrator serve`` up to ``uvicorn.run``; return what uvicorn would get."""
    import uvicorn

    seen: dict[str, Any] = {}

    def run(application: Any, **kwargs: Any) -> None:
        seen.update(kwargs, app=application)

    monkeypatch.setattr(uvicorn, "run", run)
    result = CliRunner().invoke(app, ["serve", "--scripted", "tests.api.scripted:directory", *args])
    assert result.exit_code == 0, result.output
    return seen


def test_serve_sets_uvicorns_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _serve(monkeypatch)
    assert seen["limit_concurrency"] == 1000
    assert seen["timeout_keep_alive"] == 5
    assert seen["ws_max_size"] == 1024 * 1024
    assert seen["h11_max_incomplete_event_size"] == 64 * 1024
    assert seen["http"].__name__ == "BoundedCloseProtocol"
    settings: ApiSettings = seen["app"].state.api.settings
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.allowed_hosts == ()


def test_serve_passes_the_security_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _serve(
        monkeypatch,
        "--allowed-host",
        "fanout.example",
        "--allowed-host",
        "*.corp.example",
        "--max-body-bytes",
        "2048",
        "--token-secret",
        "a-secret-of-the-replicas",
        "--send-timeout-s",
        "3",
        "--limit-concurrency",
        "50",
        "--timeout-keep-alive",
        "2",
    )
    settings: ApiSettings = seen["app"].state.api.settings
    assert settings.allowed_hosts == ("fanout.example", "*.corp.example")
    assert settings.max_body_bytes == 2048
    assert settings.token_secret == "a-secret-of-the-replicas"
    assert settings.send_timeout_s == 3
    assert (seen["limit_concurrency"], seen["timeout_keep_alive"]) == (50, 2)
    assert seen["ws_max_size"] == 2048


def test_bad_security_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="allowed_hosts"):
        ApiSettings(allowed_hosts=("evil*.example",))
    with pytest.raises(ConfigError, match="token_secret"):
        ApiSettings(token_secret="short")
    with pytest.raises(ConfigError, match="max_body_bytes"):
        ApiSettings(max_body_bytes=0)


class _StuckTransport:
    """A transport whose peer reads nothing: data stays buffered, close() never finishes."""

    def __init__(self) -> None:
        self.buffered = 70_000
        self.closing = False
        self.aborted = anyio.Event()

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.buffered = 0
        self.aborted.set()

    def is_closing(self) -> bool:
        return self.closing


async def test_a_close_that_cannot_flush_turns_into_an_abort() -> None:
    stuck = _StuckTransport()
    transport = BoundedCloseTransport(stuck, grace_s=0.05)  # type: ignore[arg-type]
    transport.close()
    assert stuck.closing
    assert transport.is_closing()
    with anyio.fail_after(5):
        await stuck.aborted.wait()


async def test_a_close_with_nothing_buffered_is_a_plain_close() -> None:
    stuck = _StuckTransport()
    stuck.buffered = 0
    transport = BoundedCloseTransport(stuck, grace_s=0.01)  # type: ignore[arg-type]
    transport.close()
    assert stuck.closing
    assert transport._timer is None  # no abort is scheduled


# --- the request-head timeout, on a real uvicorn --------------------------------------------


@asynccontextmanager
async def _hardened(settings: ApiSettings) -> AsyncIterator[tuple[str, int]]:
    app = create_app(settings, scripted_directory())
    protocol = create_http_protocol(header_timeout_s=HEAD_TIMEOUT_S)
    async with serve_app(app, http=protocol) as url:
        yield url, int(url.rsplit(":", 1)[1])


def _closed_by_server(port: int, sent: bytes) -> bool:
    """Send ``sent`` and then nothing; True once the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(sent)
        while sock.recv(4096):  # a socket timeout here: the server kept the connection
            pass
        return True


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a"],
    ids=["nothing", "half a head"],
)
async def test_a_connection_without_a_complete_head_is_closed(sent: bytes) -> None:
    async with _hardened(ApiSettings()) as (_, port):
        with anyio.fail_after(20):
            assert await anyio.to_thread.run_sync(_closed_by_server, port, sent)


async def test_the_head_timeout_spares_requests_streams_and_sockets() -> None:
    async with _hardened(ApiSettings(ping_s=0.05)) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            started = await client.post(
                "/v1/fanouts", json={"agents": [{"agent_id": "staller"}], "message": "hi"}
            )
            events = started.json()["events_url"]
            # The stall sends nothing for longer than the head timeout: only pings.
            begin = anyio.current_time()
            lasted = False
            async with client.stream("GET", events) as response:
                async for line in response.aiter_lines():
                    if line.startswith(":") and anyio.current_time() - begin > 3 * HEAD_TIMEOUT_S:
                        lasted = True
                        break
            assert lasted, "the stream ended before three head timeouts passed"
            # The same keep-alive connection serves another request after the stream.
            assert (await client.get("/healthz")).status_code == 200
        ws_url = url.replace("http://", "ws://") + "/v1/ws"
        async with connect(ws_url) as ws:
            begin = anyio.current_time()
            while anyio.current_time() - begin < 3 * HEAD_TIMEOUT_S:
                await (await ws.ping())
                await anyio.sleep(HEAD_TIMEOUT_S / 4)  # let time pass: the timeout is the subject
            await ws.send(
                json.dumps({"type": "start", "agents": [{"agent_id": "alpha"}], "message": "hi"})
            )
            assert json.loads(await ws.recv())["type"] == "ack"
