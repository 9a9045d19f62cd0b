"""Votes on a session's fan-out (one agent on two models) against the Letta protocol
simulator: the vote knows its session, and the leaderboard ranks agent x model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api import ApiSettings, create_app
from orchestrator import LettaDirectory
from tests._servers import serve_app
from tests.api.conftest import read_sse
from tests.testing._sim_fixtures import SimServer, sim_server, simulator

__all__ = ["sim_server", "simulator"]

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(sim_server: SimServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = ApiSettings(database_url=f"sqlite:///{tmp_path / 'state.db'}")
    directory = LettaDirectory(base_url=sim_server.base_url, connect_retries=0)
    app = create_app(settings, directory)
    try:
        async with (
            serve_app(app) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as http,
        ):
            yield http
    finally:
        await directory.aclose()


async def test_one_agent_on_two_models_is_ranked_per_model(
    client: httpx.AsyncClient, sim_server: SimServer
) -> None:
    a, b = list(sim_server.sim.agents.values())[:2]
    created = await client.post(
        "/v1/sessions",
        json={
            "agents": [
                {"agent_id": b.id, "model": "openai-proxy/m1"},
                {"agent_id": b.id, "model": "openai-proxy/m2"},
                {"agent_id": a.id, "label": "A"},
            ]
        },
    )
    assert created.status_code == 201, created.text
    sid = created.json()["session_id"]
    for _ in range(2):
        response, events = await read_sse(
            client,
            "POST",
            f"/v1/sessions/{sid}/fanouts",
            json={"message": "Which is better? [[history]]"},
            headers={"Accept": "text/event-stream"},
        )
        assert response.status_code == 200
        fanout_id = events[0].fanout_id
        vote = await client.post(
            f"/v1/fanouts/{fanout_id}/votes",
            json={"winner": f"{b.id}.2", "ranking": [f"{b.id}.2", a.id, f"{b.id}.1"]},
        )
        assert vote.status_code == 201, vote.text
        body = vote.json()
        assert body["session_id"] == sid
        assert body["running"] == []
        assert {c["model"] for c in body["columns"]} == {"openai-proxy/m1", "openai-proxy/m2", None}
    # The anonymous voter's second vote is on another fan-out: both count.
    board = (
        await client.get("/v1/leaderboard", params={"by": "agent_model", "session_id": sid})
    ).json()
    assert board["n_votes"] == 2
    assert [(r["agent_id"], r["model"]) for r in board["rows"]] == [
        (b.id, "openai-proxy/m2"),
        (a.id, None),
        (b.id, "openai-proxy/m1"),
    ]
    # By agent, b's two models are one row: its pair against itself says nothing.
    by_agent = (await client.get("/v1/leaderboard", params={"session_id": sid})).json()
    assert {r["agent_id"] for r in by_agent["rows"]} == {a.id, b.id}
    other = (await client.get("/v1/leaderboard", params={"session_id": "nope"})).json()
    assert other["n_votes"] == 0
