"""Values a fan-out cannot run with are refused with a 422 naming the field.

Before, an empty message was accepted and then failed at Letta as a retryable
``server_error``, and ``timeout_s: Infinity`` silently meant "no timeout".
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from .conftest import open_api, serve_live

AGENTS = '[{"agent_id": "alpha"}]'


def _raw(message: str = '"hi"', options: str = "{}") -> str:
    # Written by hand: NaN, Infinity and 1e400 are what a lenient JSON writer sends.
    return f'{{"agents": {AGENTS}, "message": {message}, "options": {options}}}'


async def _post(content: str | bytes) -> Any:
    async with open_api() as api:
        return await api.client.post(
            "/v1/fanouts", content=content, headers={"content-type": "application/json"}
        )


@pytest.mark.parametrize("message", ['""', '"   "', '"\\n\\t \\r\\n"', '"\\u3000"'])
async def test_an_empty_or_blank_message_is_refused(message: str) -> None:
    response = await _post(_raw(message=message))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"][0]["loc"] == ["body", "message"]
    assert "body.message" in error["message"]


@pytest.mark.parametrize("field", ["timeout_s", "first_token_timeout_s", "idle_timeout_s"])
@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "1e400", "true", '"5"'])
async def test_a_time_that_is_not_a_finite_number_is_refused(field: str, value: str) -> None:
    response = await _post(_raw(options=f'{{"{field}": {value}}}'))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["details"][0]["loc"] == ["body", "options", field]
    assert f"body.options.{field}" in error["message"]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "true", '"64"', "1.5"])
async def test_a_buffer_that_is_not_an_integer_is_refused(value: str) -> None:
    response = await _post(_raw(options=f'{{"buffer": {value}}}'))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["loc"] == ["body", "options", "buffer"]


async def test_finite_times_are_accepted_and_reach_the_fan_out() -> None:
    options = '{"timeout_s": 30, "first_token_timeout_s": 2.5, "idle_timeout_s": 0}'
    async with open_api() as api:
        response = await api.client.post(
            "/v1/fanouts",
            content=_raw(options=options),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 201, response.text
        summary = (await api.client.get(f"/v1/fanouts/{response.json()['fanout_id']}")).json()
    assert summary["options"]["timeout_s"] == 30
    assert summary["options"]["first_token_timeout_s"] == 2.5
    assert summary["options"]["idle_timeout_s"] == 0  # 0 turns the idle timeout off


async def test_a_body_nested_100_000_levels_deep_is_invalid_json() -> None:
    depth = 100_000
    response = await _post("[" * depth + "]" * depth)
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "invalid_json",
        "message": "request body is nested too deeply to be parsed",
    }


async def test_the_websocket_refuses_a_blank_message_and_an_infinite_timeout() -> None:
    async with serve_live() as live, connect(live.ws_url) as ws:
        await ws.send('{"type": "start", "request_id": "a", ' + _raw(message='" "')[1:])
        error = orjson.loads(await ws.recv())
        assert (error["type"], error["code"], error["request_id"]) == (
            "error",
            "invalid_request",
            "a",
        )
        assert error["details"][0]["loc"] == ["message"]
        # Infinity is not JSON at all: the strict parser refuses the frame.
        await ws.send('{"type": "start", ' + _raw(options='{"timeout_s": Infinity}')[1:])
        error = orjson.loads(await ws.recv())
        assert error["code"] == "invalid_json", error
