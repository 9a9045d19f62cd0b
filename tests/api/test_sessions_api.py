"""The sessions endpoints against the Letta protocol simulator, served by uvicorn: create,
follow-ups, threads, fork, delete, the busy rule (409) over HTTP and the WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from api import ApiSettings, create_app
from orchestrator import Event, LettaDirectory
from orchestrator.testing._modelserver import expected_history_answer
from orchestrator.testing._simulator import SimAgent, Simulator
from tests._servers import serve_app
from tests.api.conftest import read_sse
from tests.testing._sim_fixtures import SimServer, sim_server, simulator

__all__ = ["sim_server", "simulator"]

pytestmark = pytest.mark.anyio

HISTORY = "What do you see? [[history]]"
HOLD = "Hold on [[history stall@1]]"


@dataclass
class SessionApi:
    client: httpx.AsyncClient
    base_url: str
    sim: Simulator

    @property
    def agents(self) -> list[SimAgent]:
        return list(self.sim.agents.values())


@pytest.fixture
async def api(sim_server: SimServer, tmp_path: Path) -> AsyncIterator[SessionApi]:
    settings = ApiSettings(database_url=f"sqlite:///{tmp_path / 'state.db'}")
    directory = LettaDirectory(base_url=sim_server.base_url, connect_retries=0)
    app = create_app(settings, directory)
    try:
        async with (
            serve_app(app) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as client,
        ):
            yield SessionApi(client, base_url, sim_server.sim)
    finally:
        await directory.aclose()


async def _create(api: SessionApi, agents: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    response = await api.client.post("/v1/sessions", json={"agents": agents, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _send(api: SessionApi, session_id: str, message: str = HISTORY) -> list[Event]:
    response, events = await read_sse(
        api.client,
        "POST",
        f"/v1/sessions/{session_id}/fanouts",
        json={"message": message},
        headers={"Accept": "text/event-stream"},
    )
    assert response.status_code == 200, response.text
    return events


def _texts(events: list[Event]) -> dict[str, str]:
    out: dict[str, str] = {}
    for event in events:
        if event.type == "content" and event.agent_id is not None:
            out[event.agent_id] = out.get(event.agent_id, "") + event.delta
    return out


async def test_create_stream_follow_up_and_read_the_thread(api: SessionApi) -> None:
    a, b = api.agents[:2]
    session = await _create(
        api,
        [
            {"agent_id": a.id, "label": "A"},
            {"name": b.name, "model": "openai-proxy/m1"},
            {"agent_id": b.id, "model": "openai-proxy/m2"},
        ],
        title="compare",
    )
    columns = [m["column_id"] for m in session["agents"]]
    assert columns == [a.id, f"{b.id}.1", f"{b.id}.2"]
    assert [m["model"] for m in session["agents"]] == [None, "openai-proxy/m1", "openai-proxy/m2"]
    assert all(m["conversation_id"].startswith("conv-") for m in session["agents"])
    sid = session["session_id"]

    first = await _send(api, sid)
    start = first[0]
    assert start.type == "fanout_start"
    described = {entry["agent_id"]: entry for entry in start.data["agents"]}
    for member in session["agents"]:
        entry = described[member["column_id"]]
        assert entry["letta_agent_id"] == member["agent_id"]
        assert entry["conversation_id"] == member["conversation_id"]
        assert entry["model"] == member["model"]
    assert _texts(first) == {
        a.id: expected_history_answer(a.persona, 1, "scripted"),
        f"{b.id}.1": expected_history_answer(b.persona, 1, "m1"),
        f"{b.id}.2": expected_history_answer(b.persona, 1, "m2"),
    }

    # A follow-up in the background (201), read from its events URL.
    response = await api.client.post(f"/v1/sessions/{sid}/fanouts", json={"message": HISTORY})
    assert response.status_code == 201
    created = response.json()
    _, second = await read_sse(api.client, "GET", created["events_url"])
    assert _texts(second)[a.id] == expected_history_answer(a.persona, 2, "scripted")

    detail = (await api.client.get(f"/v1/sessions/{sid}")).json()
    assert detail["title"] == "compare"
    assert [t["fanout_id"] for t in detail["turns"]] == [start.fanout_id, created["fanout_id"]]
    for turn, n in zip(detail["turns"], (1, 2), strict=True):
        assert turn["message"] == HISTORY
        assert turn["answers"][a.id]["text"] == expected_history_answer(a.persona, n, "scripted")
        assert turn["answers"][a.id]["label"] == "A"
        assert {ans["state"] for ans in turn["answers"].values()} == {"done"}
    listed = (await api.client.get("/v1/sessions")).json()["sessions"]
    assert [s["session_id"] for s in listed] == [sid]


async def test_two_sessions_on_one_agent_are_isolated_and_the_default_is_untouched(
    api: SessionApi,
) -> None:
    a = api.agents[0]
    one = (await _create(api, [{"agent_id": a.id}]))["session_id"]
    two = (await _create(api, [{"agent_id": a.id}]))["session_id"]
    await _send(api, one)
    await _send(api, one)
    assert _texts(await _send(api, two)) == {
        a.id: expected_history_answer(a.persona, 1, "scripted")
    }
    _response, plain = await read_sse(
        api.client,
        "POST",
        "/v1/fanouts",
        json={"agents": [{"agent_id": a.id}], "message": HISTORY},
        headers={"Accept": "text/event-stream"},
    )
    assert _texts(plain) == {a.id: expected_history_answer(a.persona, 1, "scripted")}


async def test_overlapping_fanouts_get_409_conversation_busy(api: SessionApi) -> None:
    a, b = api.agents[:2]
    sid = (await _create(api, [{"agent_id": a.id}, {"agent_id": b.id}]))["session_id"]
    response = await api.client.post(f"/v1/sessions/{sid}/fanouts", json={"message": HOLD})
    assert response.status_code == 201
    running = response.json()["fanout_id"]
    busy = await api.client.post(f"/v1/sessions/{sid}/fanouts", json={"message": HISTORY})
    assert busy.status_code == 409
    error = busy.json()["error"]
    assert error["code"] == "conversation_busy"
    assert sorted(error["agents"]) == sorted([a.id, b.id])
    # The refused fan-out left no turn.
    detail = (await api.client.get(f"/v1/sessions/{sid}")).json()
    assert [t["fanout_id"] for t in detail["turns"]] == [running]

    # The plain endpoint obeys the same rule on the agents' default conversations.
    plain = {"agents": [{"agent_id": a.id}], "message": HOLD}
    first = await api.client.post("/v1/fanouts", json=plain)
    assert first.status_code == 201
    again = await api.client.post("/v1/fanouts", json=plain)
    assert again.status_code == 409
    assert again.json()["error"]["agents"] == [a.id]

    # Cancel takes the column id; afterwards the session takes a follow-up again.
    for fanout_id in (running, first.json()["fanout_id"]):
        cancel = await api.client.post(f"/v1/fanouts/{fanout_id}/cancel", json={})
        assert cancel.status_code == 202
        await read_sse(api.client, "GET", f"/v1/fanouts/{fanout_id}/events")
    column = await api.client.post(f"/v1/sessions/{sid}/fanouts", json={"message": HOLD})
    assert column.status_code == 201
    fanout_id = column.json()["fanout_id"]
    cancel = await api.client.post(f"/v1/fanouts/{fanout_id}/cancel", json={"agent_id": b.id})
    assert cancel.json()["cancelled"] is True
    await api.client.post(f"/v1/fanouts/{fanout_id}/cancel", json={})
    _, events = await read_sse(api.client, "GET", f"/v1/fanouts/{fanout_id}/events")
    reasons = {e.agent_id: e.get("reason") for e in events if e.type == "agent_cancelled"}
    assert reasons[b.id] == "user"


async def test_fork_then_diverge(api: SessionApi) -> None:
    a = api.agents[0]
    sid = (await _create(api, [{"agent_id": a.id}]))["session_id"]
    await _send(api, sid)
    fork = await api.client.post(f"/v1/sessions/{sid}/fork", json={"title": "branch"})
    assert fork.status_code == 201
    forked = fork.json()
    assert forked["parent_id"] == sid
    assert forked["title"] == "branch"
    fid = forked["session_id"]
    assert _texts(await _send(api, fid)) == {
        a.id: expected_history_answer(a.persona, 2, "scripted")
    }
    assert _texts(await _send(api, sid)) == {
        a.id: expected_history_answer(a.persona, 2, "scripted")
    }
    turns = (await api.client.get(f"/v1/sessions/{fid}")).json()["turns"]
    assert len(turns) == 2


async def test_bad_input_and_unknown_sessions(api: SessionApi) -> None:
    a = api.agents[0]
    empty = await api.client.post("/v1/sessions", json={"agents": []})
    assert empty.status_code == 422
    assert "agents" in empty.json()["error"]["message"]
    unknown = await api.client.post(
        "/v1/sessions", json={"agents": [{"agent_id": a.id}, {"name": "nobody"}]}
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "agent_not_found"
    assert "agents[1]" in unknown.json()["error"]["message"]
    blank = await api.client.post("/v1/sessions", json={"agents": [{"label": "x"}]})
    assert blank.status_code == 422
    for method, path, body in (
        ("GET", "/v1/sessions/s-nope", None),
        ("DELETE", "/v1/sessions/s-nope", None),
        ("POST", "/v1/sessions/s-nope/fork", {}),
        ("POST", "/v1/sessions/s-nope/fanouts", {"message": "hi"}),
    ):
        response = await api.client.request(method, path, json=body)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "session_not_found"
    sid = (await _create(api, [{"agent_id": a.id}]))["session_id"]
    no_message = await api.client.post(f"/v1/sessions/{sid}/fanouts", json={})
    assert no_message.status_code == 422
    assert "message" in no_message.json()["error"]["message"]
    deleted = await api.client.delete(f"/v1/sessions/{sid}")
    assert deleted.status_code == 204
    assert (await api.client.get(f"/v1/sessions/{sid}")).status_code == 404
    assert api.sim.conversations == {}


async def test_websocket_start_frame_with_session_id(api: SessionApi) -> None:
    a = api.agents[0]
    sid = (await _create(api, [{"agent_id": a.id}]))["session_id"]
    ws_url = api.base_url.replace("http://", "ws://") + "/v1/ws"
    async with connect(ws_url) as ws:
        await ws.send(
            orjson.dumps(
                {"type": "start", "request_id": "r1", "session_id": sid, "message": HOLD}
            ).decode()
        )
        ack = orjson.loads(await ws.recv())
        assert (ack["type"], ack["request_id"]) == ("ack", "r1")
        await ws.send(
            orjson.dumps(
                {"type": "start", "request_id": "r2", "session_id": sid, "message": HISTORY}
            ).decode()
        )
        while True:
            frame = orjson.loads(await ws.recv())
            if frame.get("type") == "error":
                break
        assert frame["code"] == "conversation_busy"
        assert frame["request_id"] == "r2"
        assert frame["agents"] == [a.id]
        await ws.send(
            orjson.dumps({"type": "start", "session_id": "s-nope", "message": "x"}).decode()
        )
        while (frame := orjson.loads(await ws.recv())).get("type") != "error":
            pass
        assert frame["code"] == "session_not_found"
        await ws.send(orjson.dumps({"type": "start", "message": "x"}).decode())
        while (frame := orjson.loads(await ws.recv())).get("type") != "error":
            pass
        assert frame["code"] == "invalid_request"
        assert "session_id" in frame["message"]
