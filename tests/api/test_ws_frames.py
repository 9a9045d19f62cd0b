"""WebSocket frames are parsed strictly and answered with strict JSON; the socket survives.

Before, a frame nested 100 000 levels deep killed the socket with a ``RecursionError``, and
``request_id: NaN`` came back as a bare ``NaN``, which no JSON parser accepts.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

import api._ws
from api._state import launch as launch_fanout

from .conftest import serve_live

START = {"type": "start", "agents": [{"agent_id": "alpha"}], "message": "hi"}
DEPTH = 100_000


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    raw = await ws.recv()
    frame = orjson.loads(raw)  # raises on NaN, Infinity, lone surrogates
    assert isinstance(frame, dict)
    return frame


async def _still_runs_a_fanout(ws: ClientConnection) -> None:
    await ws.send(json.dumps({**START, "request_id": "after"}))
    ack = await _recv(ws)
    assert (ack["type"], ack["request_id"]) == ("ack", "after")
    event = await _recv(ws)
    while event["type"] != "fanout_done":
        event = await _recv(ws)


@pytest.mark.parametrize(
    "frame",
    [
        "[" * DEPTH + "]" * DEPTH,
        '{"a":' * DEPTH + "1" + "}" * DEPTH,
        '{"type": "start", "agents": ' + "[" * DEPTH + "]" * DEPTH + "}",
    ],
    ids=["arrays", "objects", "in-a-field"],
)
async def test_a_frame_nested_100_000_deep_gets_an_error_frame(frame: str) -> None:
    async with serve_live() as live, connect(live.ws_url) as ws:
        await ws.send(frame)
        error = await _recv(ws)
        assert (error["type"], error["code"]) == ("error", "invalid_json")
        assert "depth" in str(error["message"])
        await _still_runs_a_fanout(ws)


@pytest.mark.parametrize(
    "frame",
    [
        '{"type": "start", "agents": [{"agent_id": "alpha"}], "message": "hi", "request_id": NaN}',
        '{"type": "cancel", "fanout_id": "f", "request_id": Infinity}',
        '{"type": "cancel", "fanout_id": "f", "request_id": -Infinity}',
        '{"type": "start", "agents": [{"agent_id": "alpha"}], "message": "hi", '
        '"options": {"timeout_s": NaN}}',
        '{"type": "cancel", "fanout_id": "f", "request_id": 1e400}',
    ],
)
async def test_nan_and_infinity_are_refused_and_never_echoed(frame: str) -> None:
    async with serve_live() as live, connect(live.ws_url) as ws:
        await ws.send(frame)
        raw = await ws.recv()
        assert "NaN" not in str(raw)
        assert "Infinity" not in str(raw)
        error = orjson.loads(raw)
        assert (error["type"], error["code"]) == ("error", "invalid_json")
        assert "request_id" not in error
        await _still_runs_a_fanout(ws)


async def test_only_a_request_id_that_is_text_is_echoed() -> None:
    async with serve_live() as live, connect(live.ws_url) as ws:
        await ws.send(json.dumps({"type": "nope", "request_id": "r-1"}))
        assert (await _recv(ws))["request_id"] == "r-1"
        for request_id in (7, [1, 2], {"a": 1}, "bell\x07"):
            await ws.send(json.dumps({"type": "nope", "request_id": request_id}))
            error = await _recv(ws)
            assert error["code"] == "unknown_frame_type"
            assert "request_id" not in error, error
        # A start frame names the bad request_id rather than echoing it.
        await ws.send(json.dumps({**START, "request_id": 7}))
        error = await _recv(ws)
        assert error["code"] == "invalid_request"
        assert error["details"][0]["loc"] == ["request_id"]


async def test_an_unknown_type_is_quoted_briefly() -> None:
    async with serve_live() as live, connect(live.ws_url) as ws:
        await ws.send(json.dumps({"type": "x" * 100_000}))
        error = await _recv(ws)
        assert error["code"] == "unknown_frame_type"
        assert len(str(error["message"])) < 200
        await ws.send('{"type": ' + "[" * 1000 + "]" * 1000 + "}")
        error = await _recv(ws)
        assert error["message"] == "frame type must be 'start' or 'cancel', got an array"
        await _still_runs_a_fanout(ws)


async def test_a_frame_that_meets_a_bug_gets_internal_error_and_the_socket_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def launch(state: Any, frame: Any, **kwargs: Any) -> Any:
        if frame.request_id == "boom":
            raise RuntimeError("a bug")
        return await launch_fanout(state, frame, **kwargs)

    monkeypatch.setattr(api._ws, "launch", launch)
    async with serve_live() as live, connect(live.ws_url) as ws:
        await ws.send(json.dumps({**START, "request_id": "boom"}))
        error = await _recv(ws)
        assert (error["type"], error["code"], error["request_id"]) == (
            "error",
            "internal_error",
            "boom",
        )
        await _still_runs_a_fanout(ws)
