"""Blind mode over HTTP: opaque column ids in a random order, events that name no agent,
and votes on the opaque ids that reveal the names afterwards."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from api import ApiSettings
from tests.api.conftest import Api, open_api
from tests.arena.test_api import _fanout

pytestmark = pytest.mark.anyio

#: What would give an agent away: ids, labels, run and message ids of the scripted agents.
SECRETS = ("alpha", "beta", "run-")


@pytest.fixture
async def arena(tmp_path: Path) -> AsyncIterator[Api]:
    async with open_api(ApiSettings(database_url=f"sqlite:///{tmp_path / 'state.db'}")) as api:
        yield api


async def _blind(api: Api, fanout_id: str) -> dict[str, Any]:
    response = await api.client.post(f"/v1/fanouts/{fanout_id}/blind")
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _events(api: Api, url: str) -> tuple[str, list[dict[str, Any]]]:
    response = await api.client.get(url)
    assert response.status_code == 200, response.text
    events = [
        json.loads(line.removeprefix("data:").strip())
        for line in response.text.splitlines()
        if line.startswith("data:")
    ]
    return response.text, events


async def test_the_blind_stream_names_no_agent(arena: Api) -> None:
    entry = await _fanout(arena, "alpha", "beta")
    await entry.wait()
    view = await _blind(arena, entry.fanout_id)
    assert [c["label"] for c in view["columns"]] == ["Answer A", "Answer B"]
    opaque = [c["column_id"] for c in view["columns"]]
    assert all(c.startswith("b") and len(c) == 13 for c in opaque)
    assert await _blind(arena, entry.fanout_id) == view  # drawn once per fan-out

    raw, events = await _events(arena, view["events_url"])
    for secret in SECRETS:
        assert secret not in raw, secret
    start = events[0]
    assert start["type"] == "fanout_start"
    assert start["agents"] == [
        {"agent_id": c["column_id"], "label": c["label"]} for c in view["columns"]
    ]
    assert {e["agent_id"] for e in events if e["agent_id"]} == set(opaque)
    texts: dict[str, str] = {}
    for e in events:
        if e["type"] == "content":
            texts[e["label"]] = texts.get(e["label"], "") + e["delta"]
    assert sorted(texts.values()) == ["Bonjour le monde", "Hello, world."]
    assert set(events[-1]["summary"]) == set(opaque)
    # Resume works as on the plain stream.
    _, rest = await _events(arena, f"{view['events_url']}?after=3")
    assert [e["index"] for e in rest] == list(range(4, events[-1]["index"] + 1))


async def test_the_column_order_is_shuffled_per_fanout(arena: Api) -> None:
    firsts = set()
    for _ in range(30):
        entry = await _fanout(arena, "alpha", "beta")
        view = await _blind(arena, entry.fanout_id)
        await entry.wait()
        _, events = await _events(arena, view["events_url"])
        texts: dict[str, str] = {}
        for e in events:
            if e["type"] == "content":
                texts[e["label"]] = texts.get(e["label"], "") + e["delta"]
        firsts.add(texts["Answer A"])
    # Both agents were "Answer A" at some point (each order has probability 1/2 per fan-out).
    assert len(firsts) == 2


async def test_a_vote_on_opaque_ids_reveals_the_names(arena: Api) -> None:
    entry = await _fanout(arena, "alpha", "beta")
    await entry.wait()
    view = await _blind(arena, entry.fanout_id)
    first, second = (c["column_id"] for c in view["columns"])
    response = await arena.client.post(
        f"/v1/fanouts/{entry.fanout_id}/votes",
        json={"winner": second, "ranking": [second, first], "voter": "ann"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    revealed = body["revealed"]
    assert set(revealed) == {first, second}
    assert {r["agent_id"] for r in revealed.values()} == {"alpha", "beta"}
    assert body["winner"] == revealed[second]["column_id"]
    assert body["ranking"] == [revealed[second]["column_id"], revealed[first]["column_id"]]


async def test_a_foreign_column_in_blind_mode_names_only_opaque_ids(arena: Api) -> None:
    entry = await _fanout(arena, "alpha", "beta")
    await entry.wait()
    view = await _blind(arena, entry.fanout_id)
    response = await arena.client.post(
        f"/v1/fanouts/{entry.fanout_id}/votes", json={"winner": "bnope"}
    )
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "'bnope' is not a column" in message
    for column in view["columns"]:
        assert column["column_id"] in message
    assert "alpha" not in message


async def test_blind_mode_of_an_unknown_fanout_is_a_404(arena: Api) -> None:
    assert (await arena.client.post("/v1/fanouts/nope/blind")).status_code == 404
    assert (await arena.client.get("/v1/fanouts/nope/blind/events")).status_code == 404
