"""Issue 12, finding 7: the API key stays out of URLs and logs.

The key is accepted as ``?access_token=`` only where a browser cannot send a header (the
events endpoints and the WebSocket); a short-lived signed stream token from
``POST /v1/stream-tokens`` replaces it there; uvicorn's logs show neither.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from api import ApiSettings
from api._logs import install_log_redaction, redact
from api._tokens import STREAM_SCOPE, StreamTokens, fanout_scope
from tests._servers import spawn_server

from .conftest import Api, open_api, read_sse, serve_live

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def body(*agents: str) -> dict[str, Any]:
    return {"agents": [{"agent_id": a} for a in agents], "message": "hi"}


async def start(api: Api) -> str:
    response = await api.client.post("/v1/fanouts", json=body("alpha"), headers=AUTH)
    assert response.status_code == 201
    fanout_id: str = response.json()["fanout_id"]
    return fanout_id


async def token(api: Api, **request: str) -> str:
    response = await api.client.post("/v1/stream-tokens", json=request, headers=AUTH)
    assert response.status_code == 201, response.text
    value: str = response.json()["token"]
    return value


async def test_the_key_in_a_url_is_refused_outside_the_streaming_endpoints() -> None:
    async with open_api(ApiSettings(api_key=KEY)) as api:
        fanout_id = await start(api)
        for method, path in (
            ("GET", "/v1/fanouts"),
            ("GET", f"/v1/fanouts/{fanout_id}"),
            ("GET", "/v1/agents"),
            ("GET", "/metrics"),
            ("POST", "/v1/fanouts"),
            ("POST", "/v1/stream-tokens"),
        ):
            response = await api.client.request(method, f"{path}?access_token={KEY}")
            assert response.status_code == 401, path
        # Where EventSource cannot send a header, the key still works (tokens are better).
        response, events = await read_sse(
            api.client, "GET", f"/v1/fanouts/{fanout_id}/events?access_token={KEY}"
        )
        assert response.status_code == 200
        assert events[-1].type == "fanout_done"


async def test_a_stream_token_opens_its_fan_outs_events_and_nothing_else() -> None:
    async with open_api(ApiSettings(api_key=KEY)) as api:
        assert (await api.client.post("/v1/stream-tokens", json={})).status_code == 401
        mine, other = await start(api), await start(api)
        scoped = await token(api, fanout_id=mine)
        response, events = await read_sse(
            api.client, "GET", f"/v1/fanouts/{mine}/events?access_token={scoped}"
        )
        assert response.status_code == 200
        assert {e.fanout_id for e in events} == {mine}
        refused = await api.client.get(f"/v1/fanouts/{other}/events?access_token={scoped}")
        assert refused.status_code == 401
        # A token is no key: it opens no REST endpoint, in the URL or as a Bearer header.
        assert (await api.client.get(f"/v1/fanouts?access_token={scoped}")).status_code == 401
        bearer = {"Authorization": f"Bearer {scoped}"}
        assert (await api.client.get("/v1/fanouts", headers=bearer)).status_code == 401
        tampered = scoped[:-2] + ("AA" if not scoped.endswith("AA") else "BB")
        response = await api.client.get(f"/v1/fanouts/{mine}/events?access_token={tampered}")
        assert response.status_code == 401


async def test_a_stream_token_opens_the_websocket() -> None:
    async with serve_live(ApiSettings(api_key=KEY)) as live:
        async with httpx.AsyncClient(base_url=live.base_url) as client:
            issued = (await client.post("/v1/stream-tokens", headers=AUTH)).json()
        assert issued["scope"] == STREAM_SCOPE
        async with connect(f"{live.ws_url}?access_token={issued['token']}") as ws:
            await ws.send(json.dumps({"type": "start", **body("alpha")}))
            assert json.loads(await ws.recv())["type"] == "ack"
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{live.ws_url}?access_token=not-a-token"):
                pass
        assert info.value.response.status_code == 403


def test_tokens_expire_and_are_bound_to_their_secret_and_scope() -> None:
    now = [1_000_000.0]
    tokens = StreamTokens(b"k" * 32, ttl_s=60, clock=lambda: now[0])
    issued = tokens.issue(fanout_scope("f1"))
    assert tokens.allows(issued, "/v1/fanouts/f1/events")
    assert not tokens.allows(issued, "/v1/fanouts/f2/events")
    assert not tokens.allows(issued, "/v1/ws")
    assert tokens.allows(tokens.issue(STREAM_SCOPE), "/v1/ws")
    assert StreamTokens(b"x" * 32, clock=lambda: now[0]).scope_of(issued) is None
    for bad in ("", ".", "a.b", "!!.??", issued.replace(".", "")):
        assert tokens.scope_of(bad) is None
    now[0] += 59
    assert tokens.scope_of(issued) == fanout_scope("f1")
    now[0] += 2
    assert tokens.scope_of(issued) is None


async def test_replicas_with_one_secret_accept_each_others_tokens() -> None:
    shared = ApiSettings(api_key=KEY, token_secret="shared-secret-of-the-replicas")
    async with (
        open_api(shared) as one,
        open_api(shared) as two,
        open_api(ApiSettings(api_key=KEY)) as alone,
    ):
        issued = await token(one)
        for api, status in ((two, 200), (alone, 401)):
            fanout_id = await start(api)
            response, _ = await read_sse(
                api.client, "GET", f"/v1/fanouts/{fanout_id}/events?access_token={issued}"
            )
            assert response.status_code == status


def test_redaction_of_query_secrets() -> None:
    assert redact("GET /v1/fanouts/f/events?after=3&access_token=abc.def HTTP/1.1") == (
        "GET /v1/fanouts/f/events?after=3&access_token=[redacted] HTTP/1.1"
    )
    assert redact("/v1/ws?token=x&api_key=y") == "/v1/ws?token=[redacted]&api_key=[redacted]"
    assert redact("/v1/fanouts?after=3") == "/v1/fanouts?after=3"


def test_uvicorns_access_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", f"/v1/x?access_token={KEY}", "1.1", 200
    )
    assert KEY not in caplog.text
    assert "access_token=[redacted]" in caplog.text


def test_a_served_process_never_logs_the_key_or_a_token(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    argv = [
        str(Path(sys.executable).parent / "orchestrator"),
        "serve",
        "--scripted",
        "tests.api.scripted:directory",
        "--api-key",
        KEY,
        "--log-level",
        "info",
    ]
    server = spawn_server(argv, log=log)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            created = client.post("/v1/fanouts", json=body("alpha"), headers=AUTH).json()
            events = f"/v1/fanouts/{created['fanout_id']}/events"
            issued = client.post("/v1/stream-tokens", headers=AUTH).json()["token"]
            for credential in (KEY, issued):
                with client.stream("GET", f"{events}?access_token={credential}") as response:
                    assert response.status_code == 200
                    response.read()
            assert client.get(f"/v1/agents?access_token={KEY}").status_code == 401
    finally:
        server.stop()
    text = server.output()
    assert "/events?access_token=[redacted]" in text, text
    assert KEY not in text
    assert issued not in text
