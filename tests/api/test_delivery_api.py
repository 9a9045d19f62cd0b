"""Delivery options on the endpoints: ``coalesce_ms`` (SSE and WebSocket), gzip SSE, 204.

The joined text of every agent must be the same with and without each option, and a resume
from any ``id:`` a coalesced stream sent must hand out exactly the rest of the text.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import connect

from .conftest import Api, serve_live

PACED = ("paced-1", "paced-2", "paced-3")
SSE = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}


def body(*agents: str) -> dict[str, Any]:
    return {"agents": [{"agent_id": a} for a in agents], "message": "hi"}


async def read_frames(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> tuple[httpx.Response, list[tuple[str | None, dict[str, Any]]]]:
    """Every SSE frame as ``(id or None, event JSON)``, from the raw body."""
    async with client.stream(method, url, **kwargs) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    if response.headers.get("content-encoding") == "gzip":
        raw = zlib.decompress(raw, 31)
    out: list[tuple[str | None, dict[str, Any]]] = []
    for block in raw.split(b"\r\n\r\n"):
        fields = dict(line.split(b": ", 1) for line in block.split(b"\r\n") if b": " in line)
        if b"data" in fields:  # not a keep-alive comment
            event_id = fields[b"id"].decode() if b"id" in fields else None
            out.append((event_id, orjson.loads(fields[b"data"])))
    return response, out


def texts(events: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for event in events:
        if event["type"] in ("content", "reasoning"):
            key = (event["agent_id"], event["type"])
            out[key] = out.get(key, "") + event["delta"]
    return out


async def test_a_delivery_window_keeps_the_text_and_sends_fewer_events(api: Api) -> None:
    created = (await api.client.post("/v1/fanouts", json=body(*PACED, "alpha"))).json()
    url = created["events_url"]
    _, plain = await read_frames(api.client, "GET", url, headers=SSE)
    _, merged = await read_frames(api.client, "GET", url + "?coalesce_ms=100", headers=SSE)
    plain_events = [event for _, event in plain]
    merged_events = [event for _, event in merged]
    assert plain_events[-1]["type"] == merged_events[-1]["type"] == "fanout_done"
    assert texts(merged_events) == texts(plain_events)
    assert len(merged_events) < len(plain_events)
    # Indexes rise, the last frame carries the last index as its id, every id is an index.
    indexes = [event["index"] for event in merged_events]
    assert indexes == sorted(indexes)
    assert merged[-1][0] == str(plain_events[-1]["index"])
    assert all(i is None or int(i) == e["index"] for i, e in merged)
    # Every event that is not text is sent as it was.
    others = [e for e in plain_events if e["type"] not in ("content", "reasoning")]
    assert [e for e in merged_events if e["type"] not in ("content", "reasoning")] == others


async def test_a_resume_from_any_coalesced_id_hands_out_exactly_the_rest(api: Api) -> None:
    created = (await api.client.post("/v1/fanouts", json=body(*PACED))).json()
    url = created["events_url"] + "?coalesce_ms=50"
    _, frames = await read_frames(api.client, "GET", url, headers=SSE)
    full = texts([event for _, event in frames])
    ids = [(k, i) for k, (i, _) in enumerate(frames) if i is not None]
    assert len(ids) >= 2
    for position, event_id in ids[:-1]:
        _, rest = await read_frames(
            api.client, "GET", url, headers={**SSE, "Last-Event-ID": event_id}
        )
        before = texts([event for _, event in frames[: position + 1]])
        after = texts([event for _, event in rest])
        joined = {key: before.get(key, "") + after.get(key, "") for key in full}
        assert joined == full, event_id


async def test_gzip_sse_carries_the_same_events(api: Api) -> None:
    created = (await api.client.post("/v1/fanouts", json=body(*PACED))).json()
    url = created["events_url"]
    _, plain = await read_frames(api.client, "GET", url, headers=SSE)
    gzip_headers = {**SSE, "Accept-Encoding": "gzip"}
    response, packed = await read_frames(api.client, "GET", url, headers=gzip_headers)
    assert response.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in response.headers["vary"].lower()
    assert packed == plain
    response, _ = await read_frames(api.client, "GET", url, headers=SSE)
    assert "content-encoding" not in response.headers


async def test_a_reader_that_has_the_last_event_of_a_finished_fanout_gets_204(api: Api) -> None:
    created = (await api.client.post("/v1/fanouts", json=body("alpha"))).json()
    url = created["events_url"]
    _, frames = await read_frames(api.client, "GET", url, headers=SSE)
    last = frames[-1][1]["index"]
    for headers, query in (({"Last-Event-ID": str(last)}, ""), ({}, f"?after={last}")):
        response = await api.client.get(url + query, headers={**SSE, **headers})
        assert response.status_code == 204
        assert response.content == b""
    # One event short of the end: the last event, with a 200.
    response, rest = await read_frames(
        api.client, "GET", url, headers={**SSE, "Last-Event-ID": str(last - 1)}
    )
    assert response.status_code == 200
    assert [event["index"] for _, event in rest] == [last]


async def test_a_websocket_start_frame_takes_a_delivery_window() -> None:
    async with serve_live() as live:
        results: dict[int, list[dict[str, Any]]] = {}
        for window in (0, 100):
            start: dict[str, Any] = {"type": "start", "message": "hi", "coalesce_ms": window}
            start["agents"] = [{"agent_id": a} for a in PACED]
            events: list[dict[str, Any]] = []
            async with connect(live.ws_url) as ws:
                await ws.send(json.dumps(start))
                ack = orjson.loads(await ws.recv())
                assert ack["type"] == "ack"
                while not events or events[-1]["type"] != "fanout_done":
                    events.append(orjson.loads(await ws.recv()))
            results[window] = events
    assert texts(results[100]) == texts(results[0])
    assert len(results[100]) < len(results[0])
