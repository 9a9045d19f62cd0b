"""Resume against ``orchestrator serve`` in a subprocess, read by an independent client.

Drop the SSE connection mid-stream, reconnect with ``Last-Event-ID``: the joined events must
equal, byte for byte, what a client that never dropped received, and per agent the same
events as an uninterrupted run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from httpx_sse import aconnect_sse

from tests._servers import spawn_server

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ["paced-1", "paced-2", "paced-3"]
SSE = {"Accept": "text/event-stream"}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    running = spawn_server(
        [
            str(Path(sys.executable).parent / "orchestrator"),
            "serve",
            "--scripted",
            "tests.api.scripted:directory",
            "--log-level",
            "warning",
        ],
        env={"SCRIPTED_DELAY_S": "0.004"},
    )
    try:
        yield running.url
    finally:
        running.stop()


def request(on_disconnect: str = "continue") -> dict[str, Any]:
    return {
        "agents": [{"agent_id": a} for a in AGENTS],
        "message": "count",
        "options": {"on_disconnect": on_disconnect},
    }


async def read_all(
    client: httpx.AsyncClient, method: str, url: str, **kw: Any
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with aconnect_sse(client, method, url, **kw) as source:
        assert source.response.status_code == 200
        async for sse in source.aiter_sse():
            out.append({"id": sse.id, "event": sse.event, "data": sse.data})
    return out


async def test_drop_and_resume_equals_an_uninterrupted_stream(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        first: list[dict[str, Any]] = []
        observed: list[dict[str, Any]] = []
        async with anyio.create_task_group() as tg:
            async with aconnect_sse(
                client, "POST", "/v1/fanouts", json=request(), headers=SSE
            ) as source:
                fanout_id = source.response.headers["x-fanout-id"]
                url = f"/v1/fanouts/{fanout_id}/events"

                async def observe() -> None:
                    observed.extend(await read_all(client, "GET", url))

                # A second client that never drops: the reference stream.
                tg.start_soon(observe)
                async for sse in source.aiter_sse():
                    first.append({"id": sse.id, "event": sse.event, "data": sse.data})
                    if len(first) == 15:
                        break  # drop the connection mid-stream
            rest = await read_all(client, "GET", url, headers={"Last-Event-ID": first[-1]["id"]})
        assert rest, "the fan-out had ended before the drop"
        joined = first + rest
        assert [int(e["id"]) for e in joined] == list(range(len(joined)))
        assert joined == observed
        assert joined[-1]["event"] == "fanout_done"
        assert '"counts":{"done":3,"error":0,"cancelled":0}' in joined[-1]["data"]

        # Per agent, the same events as a separate run that was never interrupted.
        reference = await read_all(
            client, "POST", "/v1/fanouts", json=request("cancel"), headers=SSE
        )
        assert per_agent(joined) == per_agent(reference)


def per_agent(events: list[dict[str, Any]]) -> dict[str, list[tuple[str, int, str]]]:
    out: dict[str, list[tuple[str, int, str]]] = {}
    for raw in events:
        event = json.loads(raw["data"])
        if event["agent_id"] is not None:
            out.setdefault(event["agent_id"], []).append(
                (event["type"], event["seq"], event.get("delta", ""))
            )
    return out
