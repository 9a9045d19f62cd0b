"""The API against the real Letta server of the local stack (production directory path).

A client that drops an SSE stream mid-answer must get its agents' runs ``cancelled`` on the
Letta server, not just the HTTP stream closed.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from httpx_sse import aconnect_sse
from letta_client import AsyncLetta

from api import ApiSettings, create_app
from orchestrator import Event
from orchestrator.stack._stack import StackInfo
from orchestrator.testing._modelserver import expected_answer
from tests._servers import serve_app
from tests._wait import wait_until
from tests.letta.conftest import CreateAgent

pytestmark = [pytest.mark.letta, pytest.mark.slow]

PERSONAS = ("A terse critic.", "A cheerful poet.")


async def wait_run_cancelled(client: AsyncLetta, run_id: str, timeout_s: float = 20.0) -> str:
    async def cancelled() -> bool:
        status = (await client.runs.retrieve(run_id)).status
        assert status in ("created", "running", "cancelled"), status
        return status == "cancelled"

    # The server records the cancellation asynchronously.
    await wait_until(
        cancelled, f"run {run_id} to be cancelled", timeout_s=timeout_s, interval_s=0.2
    )
    return "cancelled"


async def test_dropping_the_stream_cancels_the_runs_on_the_letta_server(
    letta_stack: StackInfo, letta_client: AsyncLetta, scripted_agent: CreateAgent
) -> None:
    ids = [await scripted_agent(p) for p in PERSONAS]
    app = create_app(ApiSettings(letta_base_url=letta_stack.base_url))
    body: dict[str, Any] = {
        "agents": [{"agent_id": a, "label": f"agent{n}"} for n, a in enumerate(ids)],
        "message": "Tell a long story [[words=80 tps=10]]",
    }
    events: list[Event] = []
    async with serve_app(app) as base, httpx.AsyncClient(base_url=base, timeout=60) as http:
        agents = (await http.get("/v1/agents")).json()
        assert set(ids) <= {a["agent_id"] for a in agents}
        assert (await http.get("/healthz")).json()["letta"]["ok"] is True
        async with aconnect_sse(
            http, "POST", "/v1/fanouts", json=body, headers={"Accept": "text/event-stream"}
        ) as source:
            fanout_id = source.response.headers["x-fanout-id"]
            async for sse in source.aiter_sse():
                events.append(Event.from_json(sse.data))
                if {e.agent_id for e in events if e.type == "content"} == set(ids):
                    break  # both are answering: drop the connection
        run_ids = {e.agent_id: e.get("run_id") for e in events if e.type == "agent_start"}
        assert set(run_ids) == set(ids)
        assert all(run_ids.values())
        for run_id in run_ids.values():
            assert await wait_run_cancelled(letta_client, run_id) == "cancelled"
        with anyio.fail_after(30):
            while True:
                state = (await http.get(f"/v1/fanouts/{fanout_id}")).json()
                if state["state"] == "finished":
                    break
                await anyio.sleep(0.1)  # polling the API's own state, with a deadline
    for agent_id in ids:
        summary = state["agents"][agent_id]
        assert (summary["state"], summary["reason"]) == ("cancelled", "disconnect")
    # What streamed before the drop was the start of each agent's real answer.
    for agent_id, persona in zip(ids, PERSONAS, strict=True):
        partial = "".join(e.delta for e in events if e.agent_id == agent_id and e.type == "content")
        assert partial
        full = expected_answer(persona, body["message"])
        assert full.startswith(partial)
        assert len(partial) < len(full)
