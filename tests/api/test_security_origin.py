"""Issue 12, finding 1: no other web page can drive the server (cross-site WebSocket
hijacking, cross-site POSTs, DNS rebinding).

A foreign ``Host`` gets 400 (DNS rebinding), a foreign ``Origin`` gets 403 on HTTP and a
refused handshake on the WebSocket, and nothing starts. The panel's own origin, clients
that send no ``Origin`` (curl, SDKs) and the ``--cors-origin`` list keep working.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from api import ApiSettings
from api._guard import origin_allowed
from api._serve import _allowed_hosts

from .conftest import Live, open_api, serve_live


def body(*agents: str) -> dict[str, Any]:
    return {"agents": [{"agent_id": a} for a in agents], "message": "hi"}


def fanouts(live_or_app: Any) -> int:
    hub = live_or_app.app.state.api.hub
    assert hub is not None
    return len(hub.recent())


def host_of(live: Live) -> str:
    return live.base_url.removeprefix("http://")


async def test_a_foreign_host_gets_400_and_nothing_starts() -> None:
    async with open_api() as api:
        response = await api.client.post(
            "/v1/fanouts", json=body("alpha"), headers={"Host": "evil.example"}
        )
        assert response.status_code == 400
        assert fanouts(api) == 0
        # The loopback names (with a port, as browsers send them) are served.
        for host in ("localhost:8080", "127.0.0.1:8080", "[::1]:8080"):
            ok = await api.client.get("/v1/fanouts", headers={"Host": host})
            assert ok.status_code == 200, host


async def test_allowed_hosts_extend_the_loopback_names() -> None:
    settings = ApiSettings(allowed_hosts=("fanout.example", "*.corp.example"))
    async with open_api(settings) as api:
        for host in ("fanout.example", "a.corp.example:443"):
            response = await api.client.get("/v1/fanouts", headers={"Host": host})
            assert response.status_code == 200, host
        evil = await api.client.get("/v1/fanouts", headers={"Host": "evil.example"})
        assert evil.status_code == 400


def test_serve_allows_the_bind_address_but_no_wildcard() -> None:
    assert _allowed_hosts("10.1.2.3", ["fanout.example"]) == ("fanout.example", "10.1.2.3")
    assert _allowed_hosts("0.0.0.0", []) == ()
    assert _allowed_hosts("::", []) == ()
    assert _allowed_hosts("127.0.0.1", []) == ()
    assert ApiSettings(allowed_hosts=("::1", "Fanout.Example")).trusted_hosts() == [
        "localhost",
        "127.0.0.1",
        "[::1]",
        "fanout.example",
    ]


async def test_a_post_from_a_foreign_origin_gets_403_and_nothing_starts() -> None:
    async with open_api() as api:
        # A "simple" request (no Content-Type, so no CORS preflight) that browsers send
        # cross-site without asking; FastAPI would parse its body as JSON.
        response = await api.client.post(
            "/v1/fanouts",
            content=json.dumps(body("alpha")).encode(),
            headers={"Origin": "http://evil.example", "Host": "127.0.0.1:8080"},
        )
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden_origin"
        assert fanouts(api) == 0
        same = await api.client.post(
            "/v1/fanouts",
            json=body("alpha"),
            headers={"Origin": "http://127.0.0.1:8080", "Host": "127.0.0.1:8080"},
        )
        assert same.status_code == 201
        assert fanouts(api) == 1


async def test_a_websocket_from_a_foreign_origin_is_refused_before_it_starts() -> None:
    async with serve_live() as live:
        with pytest.raises(InvalidStatus) as info:
            async with connect(live.ws_url, origin="http://evil.example"):  # type: ignore[arg-type]
                pass
        assert info.value.response.status_code == 403
        assert fanouts(live) == 0


async def test_a_websocket_with_a_foreign_host_is_refused() -> None:
    async with serve_live() as live:
        port = int(host_of(live).rsplit(":", 1)[1])
        # The URL names the rebinding domain (its Host header); the TCP connection goes to
        # the server on loopback, as after a DNS rebinding.
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://evil.example:{port}/v1/ws", host="127.0.0.1", port=port):
                pass
        assert info.value.response.status_code in (400, 403)
        assert fanouts(live) == 0


@pytest.mark.parametrize("origin", [None, "same", "http://ui.example"])
async def test_the_own_origin_the_cors_list_and_no_origin_may_use_the_socket(
    origin: str | None,
) -> None:
    async with serve_live(ApiSettings(cors_origins=("http://ui.example",))) as live:
        sent = f"http://{host_of(live)}" if origin == "same" else origin
        async with connect(live.ws_url, origin=sent) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"type": "start", **body("alpha")}))
            assert json.loads(await ws.recv())["type"] == "ack"
        assert fanouts(live) == 1


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("https://fanout.example", "fanout.example", True),  # TLS proxy that keeps Host
        ("http://fanout.example:80", "fanout.example", True),
        ("http://127.0.0.1:8081", "127.0.0.1:8080", False),
        ("http://evil.example", "127.0.0.1:8080", False),
        ("null", "127.0.0.1:8080", False),
        ("file://", "127.0.0.1:8080", False),
        ("http://127.0.0.1:8080", None, False),
    ],
)
def test_origin_rules(origin: str, host: str | None, allowed: bool) -> None:
    assert origin_allowed(origin, host, ()) is allowed
    assert origin_allowed(origin, host, (origin,)) is True
