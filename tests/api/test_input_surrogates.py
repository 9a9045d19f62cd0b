"""Strings that are not valid Unicode text are refused at the edge, naming the field.

A lone surrogate (``"\\ud800"``) is valid JSON but not text: before, it gave a 500 in
``message`` (the size check could not encode it), and in an agent label the fan-out was
created and then every read of it failed (``GET`` 500, a reset stream, a dead WebSocket).
Control characters are refused the same way (tab and line breaks are fine in a message).
Characters outside the BMP are text: accepted, and given back intact.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from api import ApiSettings, create_app
from orchestrator import ScriptedDirectory, ScriptedSource
from tests._servers import serve_app

from .conftest import Api, open_api, read_sse, serve_live


def _post(api: Api, payload: dict[str, Any]) -> Any:
    # json.dumps writes a lone surrogate as the escape "\ud800", as a client would.
    return api.client.post(
        "/v1/fanouts", content=json.dumps(payload), headers={"content-type": "application/json"}
    )


def _body(**changes: Any) -> dict[str, Any]:
    agent = {"agent_id": "alpha", "label": "A", **changes.pop("agent", {})}
    return {"agents": [agent], "message": "hi", **changes}


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        (_body(message="\ud800"), ["body", "message"]),
        (_body(message="before \udfff after"), ["body", "message"]),
        (_body(agent={"label": "\ud800"}), ["body", "agents", "0", "label"]),
        (_body(agent={"agent_id": "al\udc00pha"}), ["body", "agents", "0", "agent_id"]),
        (_body(agent={"agent_id": None, "name": "\ud83d"}), ["body", "agents", "0", "name"]),
        (_body(message="nul \x00 inside"), ["body", "message"]),
        (_body(message="escape \x1b[31m"), ["body", "message"]),
        (_body(agent={"label": "two\nlines"}), ["body", "agents", "0", "label"]),
    ],
)
async def test_rest_refuses_strings_that_are_not_text_naming_the_field(
    payload: dict[str, Any], loc: list[str]
) -> None:
    async with open_api() as api:
        response = await _post(api, payload)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_request"
        assert [d["loc"] for d in error["details"]] == [loc]
        assert ".".join(loc) in error["message"]
        assert "U+" in error["message"]  # names the character
        # Nothing was started that could not be read back.
        assert (await api.client.get("/v1/fanouts")).json() == {"fanouts": []}


async def test_cancel_refuses_an_agent_id_that_is_not_text() -> None:
    async with open_api() as api:
        created = (await api.client.post("/v1/fanouts", json=_body())).json()
        response = await api.client.post(
            f"/v1/fanouts/{created['fanout_id']}/cancel",
            content=json.dumps({"agent_id": "\ud800"}),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["loc"] == ["body", "agent_id"]


async def test_an_unknown_key_that_is_not_text_is_named_without_breaking_the_answer() -> None:
    async with open_api() as api:
        response = await _post(api, {**_body(), "x\ud800": 1})
    assert response.status_code == 422
    orjson.loads(response.content)  # strict JSON, whatever the client sent


async def test_text_outside_the_bmp_and_line_breaks_are_accepted_and_kept() -> None:
    label, message = "🦊 fox", "ciao 👋🏽\n\tsecond line 𝄞"
    async with open_api() as api:
        response = await _post(api, _body(message=message, agent={"label": label}))
        assert response.status_code == 201, response.text
        fanout = response.json()
        summary = await api.client.get(f"/v1/fanouts/{fanout['fanout_id']}")
        assert summary.status_code == 200
        assert orjson.loads(summary.content)["prompt"] == message
        _, events = await read_sse(api.client, "GET", fanout["events_url"])
    assert events[0].data["prompt"] == message
    assert {e.label for e in events if e.agent_id} == {label}


async def test_a_websocket_frame_with_a_lone_surrogate_gets_an_error_and_the_socket_lives() -> None:
    async with serve_live() as live, connect(live.ws_url) as ws:
        for frame, field in (
            ({"type": "start", **_body(message="\ud800")}, ["message"]),
            ({"type": "start", **_body(agent={"label": "\udc00"})}, ["agents", "0", "label"]),
            ({"type": "start", "request_id": "\ud800", **_body()}, ["request_id"]),
        ):
            await ws.send(json.dumps(frame))
            error = orjson.loads(await ws.recv())
            # Refused as a request, naming the field, like the REST API does.
            assert (error["type"], error["code"]) == ("error", "invalid_request"), error
            assert error["details"][0]["loc"] == field
            assert "surrogate" in error["message"]
            assert "request_id" not in error
        # A control character is valid JSON: the model refuses it and names the field.
        await ws.send(json.dumps({"type": "start", "request_id": "r1", **_body(message="\x00")}))
        error = orjson.loads(await ws.recv())
        assert (error["code"], error["request_id"]) == ("invalid_request", "r1")
        assert error["details"][0]["loc"] == ["message"]
        # The same socket still runs a fan-out to its end.
        await ws.send(json.dumps({"type": "start", "request_id": "ok", **_body()}))
        ack = orjson.loads(await ws.recv())
        assert (ack["type"], ack["request_id"]) == ("ack", "ok")
        event = orjson.loads(await ws.recv())
        while event["type"] != "fanout_done":
            event = orjson.loads(await ws.recv())


def _upstream(agent_id: str, label: str) -> ScriptedSource:
    # What an upstream server can send: a lone surrogate in an agent's text.
    return ScriptedSource(agent_id, ["ok ", "\ud800", " end"], label=label)


def _fine(agent_id: str, label: str) -> ScriptedSource:
    return ScriptedSource(agent_id, ["fine"], label=label)


UPSTREAM = {"agents": [{"agent_id": "odd"}, {"agent_id": "fine"}], "message": "hi"}


def _texts(events: list[dict[str, Any]]) -> dict[str, str]:
    texts = {"odd": "", "fine": ""}
    for event in events:
        if event["type"] == "content":
            texts[event["agent_id"]] += event["delta"]
    return texts


async def test_text_that_is_not_unicode_from_upstream_does_not_end_the_socket() -> None:
    app = create_app(ApiSettings(), ScriptedDirectory({"odd": _upstream, "fine": _fine}))
    async with serve_app(app) as url, connect(url.replace("http", "ws") + "/v1/ws") as ws:
        await ws.send(json.dumps({"type": "start", **UPSTREAM}))
        assert orjson.loads(await ws.recv())["type"] == "ack"
        events = [orjson.loads(await ws.recv())]
        while events[-1]["type"] != "fanout_done":
            events.append(orjson.loads(await ws.recv()))
        assert [e["index"] for e in events] == list(range(len(events)))
        assert _texts(events) == {"odd": "ok \ufffd end", "fine": "fine"}
        # The socket is still open and takes the next frame.
        await ws.send(json.dumps({"type": "cancel", "fanout_id": "nope"}))
        assert orjson.loads(await ws.recv())["code"] == "fanout_not_found"


async def test_text_that_is_not_unicode_from_upstream_does_not_cut_the_sse_stream() -> None:
    app = create_app(ApiSettings(), ScriptedDirectory({"odd": _upstream, "fine": _fine}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://localhost") as client,
            aconnect_sse(
                client,
                "POST",
                "/v1/fanouts",
                json=UPSTREAM,
                headers={"Accept": "text/event-stream"},
            ) as source,
        ):
            events = [orjson.loads(sse.data) async for sse in source.aiter_sse()]
    assert events[-1]["type"] == "fanout_done"
    assert _texts(events) == {"odd": "ok \ufffd end", "fine": "fine"}
