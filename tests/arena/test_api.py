"""The arena endpoints: votes on a fan-out (also while it streams), 422 naming a foreign
column, 404 for an unknown fan-out, and the leaderboard with its filters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from api import ApiSettings
from orchestrator import HubFanOut
from tests.api.conftest import Api, open_api

pytestmark = pytest.mark.anyio


@pytest.fixture
async def arena(tmp_path: Path) -> AsyncIterator[Api]:
    async with open_api(ApiSettings(database_url=f"sqlite:///{tmp_path / 'state.db'}")) as api:
        yield api


async def _fanout(api: Api, *agents: str) -> HubFanOut:
    response = await api.client.post(
        "/v1/fanouts",
        json={"agents": [{"agent_id": a} for a in agents], "message": "Which is best?"},
    )
    assert response.status_code == 201, response.text
    hub = api.app.state.api.require_hub()
    entry: HubFanOut = hub.get(response.json()["fanout_id"])
    return entry


async def _until_done(entry: HubFanOut, agent_id: str) -> None:
    async with entry.watch() as sub:
        async for event in sub:
            if event.agent_id == agent_id and event.is_terminal:
                return


async def _vote(api: Api, fanout_id: str, **body: Any) -> Any:
    return await api.client.post(f"/v1/fanouts/{fanout_id}/votes", json=body)


async def test_a_vote_while_an_answer_still_streams_records_it(arena: Api) -> None:
    entry = await _fanout(arena, "alpha", "staller")
    await _until_done(entry, "alpha")
    response = await _vote(arena, entry.fanout_id, winner="alpha", voter="ann", comment="ok")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["running"] == ["staller"]
    assert body["winner"] == "alpha"
    assert [c["column_id"] for c in body["columns"]] == ["alpha", "staller"]
    entry.cancel()
    await entry.wait()


async def test_a_foreign_column_is_a_422_naming_it(arena: Api) -> None:
    entry = await _fanout(arena, "alpha", "beta")
    await entry.wait()
    response = await _vote(arena, entry.fanout_id, winner="gamma")
    assert response.status_code == 422
    error = response.json()["error"]
    assert "'gamma' is not a column" in error["message"]
    assert error["details"] == [{"loc": ["body", "winner"], "column": "gamma"}]
    response = await _vote(arena, entry.fanout_id, winner="tie", ranking=["beta", "zeta"])
    assert response.status_code == 422
    assert "'zeta'" in response.json()["error"]["message"]
    board = (await arena.client.get("/v1/leaderboard")).json()
    assert board["n_votes"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "winner"), ({"winner": ""}, "winner"), ({"winner": "alpha", "extra": 1}, "extra")],
)
async def test_a_malformed_vote_is_a_422_naming_the_field(
    arena: Api, body: dict[str, Any], field: str
) -> None:
    entry = await _fanout(arena, "alpha", "beta")
    response = await _vote(arena, entry.fanout_id, **body)
    assert response.status_code == 422
    assert field in response.text


async def test_an_unknown_fanout_is_a_404(arena: Api) -> None:
    response = await _vote(arena, "no-such-fanout", winner="alpha")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "fanout_not_found"


async def test_votes_make_the_leaderboard(arena: Api) -> None:
    fanouts = []
    for voter in ("ann", "bob", "cy"):
        entry = await _fanout(arena, "alpha", "beta")
        await entry.wait()
        fanouts.append(entry.fanout_id)
        assert (await _vote(arena, entry.fanout_id, winner="alpha", voter=voter)).status_code == 201
    # A repeat replaces: ann changes her mind on her fan-out.
    await _vote(arena, fanouts[0], winner="beta", voter="ann", preset="duo")
    response = await arena.client.get("/v1/leaderboard", params={"rounds": 20})
    assert response.status_code == 200, response.text
    board = response.json()
    assert board["n_votes"] == 3
    assert [(r["agent_id"], r["wins"], r["losses"]) for r in board["rows"]] == [
        ("alpha", 2, 1),
        ("beta", 1, 2),
    ]
    top = board["rows"][0]
    assert top["ci_low"] <= top["rating"] <= top["ci_high"]
    assert "Bradley-Terry" in board["method"]
    only = (await arena.client.get("/v1/leaderboard", params={"preset": "duo"})).json()
    assert only["n_votes"] == 1
    assert only["rows"][0]["agent_id"] == "beta"
    assert (await arena.client.get("/v1/leaderboard", params={"voter": "bob"})).json()[
        "n_votes"
    ] == 1


@pytest.mark.parametrize(
    "params", [{"by": "model"}, {"rounds": -1}, {"since": "soon"}, {"since": "nan"}]
)
async def test_bad_leaderboard_queries_are_422(arena: Api, params: dict[str, Any]) -> None:
    response = await arena.client.get("/v1/leaderboard", params=params)
    assert response.status_code == 422, response.text
