"""Through a real uvicorn (in this process, so the scripted sources can be inspected):
disconnects cancel, ``continue`` keeps running and resumes, and the WebSocket."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from api import ApiSettings
from orchestrator import Event, HubFanOut, ScriptedSource

from .conftest import Live, read_sse, serve_live

SSE = {"Accept": "text/event-stream"}


def body(*agents: str, **options: Any) -> dict[str, Any]:
    return {"agents": [{"agent_id": a} for a in agents], "message": "hi", "options": options}


def wire(events: list[Event]) -> list[str]:
    """Events as sent (JSON rounds ``t``), for exact comparisons."""
    return [e.to_json() for e in events]


def created(live: Live, agent_id: str) -> list[ScriptedSource]:
    return [s for s in live.directory.created if s.agent_id == agent_id]


def entry(live: Live, fanout_id: str) -> HubFanOut:
    hub = live.app.state.api.hub
    assert hub is not None
    result: HubFanOut = hub.get(fanout_id)
    return result


async def read_until(
    client: httpx.AsyncClient, agent_id: str, **kwargs: Any
) -> tuple[str, list[Event]]:
    """Stream until ``agent_id`` sent content, then drop the connection."""
    events: list[Event] = []
    async with aconnect_sse(client, "POST", "/v1/fanouts", headers=SSE, **kwargs) as source:
        fanout_id = source.response.headers["x-fanout-id"]
        async for sse in source.aiter_sse():
            events.append(Event.from_json(sse.data))
            if events[-1].agent_id == agent_id and events[-1].type == "content":
                break
    return fanout_id, events


async def test_sse_disconnect_cancels_the_agents(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.base_url) as client:
        fanout_id, seen = await read_until(client, "staller", json=body("staller", "paced-1"))
    run = entry(live, fanout_id)
    with anyio.fail_after(20):
        await run.wait()
    [staller] = created(live, "staller")
    assert staller.cancel_calls == 1
    assert staller.closed
    ends = {e.agent_id: e for e in run.log.snapshot() if e.is_terminal}
    assert ends["staller"].type == "agent_cancelled"
    assert ends["staller"].get("reason") == "disconnect"
    assert wire(seen) == wire(run.log.snapshot()[: len(seen)])


async def test_continue_keeps_running_and_resumes_without_gap(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.base_url) as client:
        fanout_id, first = await read_until(
            client, "staller", json=body("staller", "alpha", on_disconnect="continue")
        )
        run = entry(live, fanout_id)
        # The drop is seen once the server's reader has gone.
        with anyio.fail_after(20):
            while run.brief()["watchers"]:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert run.running
        [staller] = created(live, "staller")
        assert staller.cancel_calls == 0
        response = await client.post(
            f"/v1/fanouts/{fanout_id}/cancel", json={"agent_id": "staller"}
        )
        assert response.status_code == 202
        _, rest = await read_sse(
            client,
            "GET",
            f"/v1/fanouts/{fanout_id}/events",
            headers={"Last-Event-ID": str(first[-1].index)},
        )
    joined = first + rest
    assert [e.index for e in joined] == list(range(len(joined)))
    assert wire(joined) == wire(run.log.snapshot())
    assert joined[-1].type == "fanout_done"
    assert staller.cancel_calls == 1


async def recv(ws: ClientConnection) -> dict[str, Any]:
    with anyio.fail_after(20):
        frame: dict[str, Any] = json.loads(await ws.recv())
    return frame


async def test_two_fanouts_over_one_socket_and_cancel_one_agent(live: Live) -> None:
    async with connect(live.ws_url) as ws:
        await ws.send(json.dumps({"type": "start", "request_id": "r1", **body("alpha", "beta")}))
        await ws.send(json.dumps({"type": "start", "request_id": "r2", **body("staller", "alpha")}))
        acks: dict[str, str] = {}
        events: dict[str, list[Event]] = {}
        done: set[str] = set()
        cancel_sent = False
        while len(done) < 2:
            frame = await recv(ws)
            if frame["type"] == "ack":
                if frame["action"] == "start":
                    acks[frame["request_id"]] = frame["fanout_id"]
                else:
                    assert frame["cancelled"] is True
                continue
            event = Event.from_dict(frame)
            events.setdefault(event.fanout_id, []).append(event)
            if event.agent_id == "staller" and event.type == "content" and not cancel_sent:
                cancel_sent = True
                await ws.send(
                    json.dumps(
                        {"type": "cancel", "fanout_id": event.fanout_id, "agent_id": "staller"}
                    )
                )
            if event.type == "fanout_done":
                done.add(event.fanout_id)
        assert set(acks) == {"r1", "r2"}
        assert set(events) == set(acks.values())
        for fanout_id, stream in events.items():
            assert [e.index for e in stream] == list(range(len(stream)))
            assert wire(stream) == wire(entry(live, fanout_id).log.snapshot())
        ends = {e.agent_id: e for e in events[acks["r2"]] if e.is_terminal}
        assert (ends["staller"].type, ends["staller"].get("reason")) == ("agent_cancelled", "user")
        assert ends["alpha"].type == "agent_done"
        assert all(e.type != "agent_cancelled" for e in events[acks["r1"]])


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_frame"),
        (json.dumps({"type": "nope"}), "unknown_frame_type"),
        (json.dumps({"type": "start", "request_id": "x"}), "invalid_request"),
        (json.dumps({"type": "cancel", "fanout_id": "f-nope"}), "fanout_not_found"),
        (json.dumps({"type": "start", **body(*[f"a{n}" for n in range(17)])}), "too_many_agents"),
    ],
)
async def test_malformed_frames_get_an_error_and_the_socket_stays_open(
    live: Live, frame: str, code: str
) -> None:
    async with connect(live.ws_url) as ws:
        await ws.send(frame)
        error = await recv(ws)
        assert (error["type"], error["code"]) == ("error", code)
        assert error["message"]
        await ws.send(json.dumps({"type": "start", "request_id": "ok", **body("alpha")}))
        assert (await recv(ws))["request_id"] == "ok"
        last = await recv(ws)
        while last.get("type") != "fanout_done":
            last = await recv(ws)


async def test_closing_the_socket_cancels_its_fanouts(live: Live) -> None:
    async with connect(live.ws_url) as ws:
        await ws.send(json.dumps({"type": "start", **body("staller")}))
        fanout_id = (await recv(ws))["fanout_id"]
        while (await recv(ws)).get("type") != "content":
            pass
    run = entry(live, fanout_id)
    with anyio.fail_after(20):
        await run.wait()
    [staller] = created(live, "staller")
    assert staller.cancel_calls == 1
    ends = [e for e in run.log.snapshot() if e.is_terminal]
    assert [e.get("reason") for e in ends] == ["disconnect"]


async def test_socket_needs_the_api_key_when_configured() -> None:
    async with serve_live(ApiSettings(api_key="k")) as live:
        with pytest.raises(InvalidStatus) as info:
            async with connect(live.ws_url):
                pass
        assert info.value.response.status_code == 403
        async with connect(live.ws_url + "?access_token=k") as ws:
            await ws.send(json.dumps({"type": "start", **body("alpha")}))
            assert (await recv(ws))["type"] == "ack"
