"""Fault: 100 SSE clients connect and drop at random points, round after round.

The server (a real uvicorn in its own thread, see ``_server.py``) must come back to its
baseline after every round: no fan-out left running, the same number of asyncio tasks on its
loop, no source kept alive by anything, and the process's RSS back near where it was. Every
dropped fan-out's sources were cancelled: exactly one ``cancel()`` for each agent that was
still running when its client left (reason ``disconnect``), none for an agent that had
already finished.
"""

from __future__ import annotations

import gc
import random
import weakref
from typing import Any

import anyio
import httpx
import pytest
from httpx_sse import aconnect_sse

from api import ApiSettings
from orchestrator import Event, ScriptedDirectory, ScriptedSource
from tests._wait import wait_until_sync

from ._server import ServerProbe, rss_mb, serve_in_thread

pytestmark = pytest.mark.slow

CLIENTS = 100
ROUNDS = 4  # round 0 warms the allocator up; RSS is compared from round 1 on
SEED = 20240607
WORDS = [f"w{n} " for n in range(40)]
SSE = {"Accept": "text/event-stream"}
RSS_SLACK_MB = 25.0


def _paced(agent_id: str, label: str) -> ScriptedSource:
    return ScriptedSource(agent_id, WORDS, label=label, delay_s=0.002)


def _staller(agent_id: str, label: str) -> ScriptedSource:
    # Never ends by itself: its client always leaves while it runs.
    return ScriptedSource(agent_id, WORDS[:10], label=label, stall_at=4)


def _directory() -> ScriptedDirectory:
    agents: dict[str, Any] = {"warm": _paced}
    for r in range(ROUNDS):
        for i in range(CLIENTS):
            agents[f"p{r}-{i}"] = _paced
            agents[f"s{r}-{i}"] = _staller
    return ScriptedDirectory(agents)


async def _client(
    http: httpx.AsyncClient, agents: list[str], drop_after: int, fanout_ids: dict[str, str]
) -> None:
    body = {"agents": [{"agent_id": a} for a in agents], "message": "go"}
    async with aconnect_sse(http, "POST", "/v1/fanouts", json=body, headers=SSE) as source:
        assert source.response.status_code == 200, await source.response.aread()
        fanout_ids[agents[0]] = source.response.headers["x-fanout-id"]
        if drop_after == 0:
            return  # leave right after the headers
        seen = 0
        async for sse in source.aiter_sse():
            event = Event.from_json(sse.data)
            assert event.type != "fanout_done", "a staller never ends: the drop must come first"
            seen += 1
            if seen >= drop_after:
                return  # leaving the block closes the connection mid-stream


def _check_round(probe: ServerProbe, r: int, fanout_ids: dict[str, str]) -> None:
    by_id = {s.agent_id: s for s in probe.directory.created}
    assert len(fanout_ids) == CLIENTS
    for i in range(CLIENTS):
        fanout_id = fanout_ids[f"p{r}-{i}"]
        done = probe.done[fanout_id]  # the fan-out ended and recorded its summary
        summary = done.data["summary"]
        for agent_id in (f"p{r}-{i}", f"s{r}-{i}"):
            source = by_id[agent_id]
            entry = summary[agent_id]
            assert source.closed, f"{agent_id}: stream not closed"
            if entry["state"] == "done":
                assert agent_id.startswith("p")
                assert source.cancel_calls == 0, agent_id
            else:
                assert (entry["state"], entry["reason"]) == ("cancelled", "disconnect"), entry
                assert source.cancel_calls == 1, (agent_id, source.cancel_calls)
        assert summary[f"s{r}-{i}"]["state"] == "cancelled"


def _settle(probe: ServerProbe, baseline_tasks: int) -> None:
    wait_until_sync(lambda: probe.active_fanouts() == 0, "every fan-out to end")
    wait_until_sync(
        lambda: probe.tasks() == baseline_tasks,
        f"the server's tasks to return to {baseline_tasks}",
    )
    # Finished fan-outs are retained for retention_s: wait until the reaper forgot them.
    wait_until_sync(lambda: not probe.call(lambda: probe.hub.recent(1000)), "the hub to reap")


async def test_hundred_clients_dropping_at_random_leave_nothing_behind() -> None:
    directory = _directory()
    settings = ApiSettings(max_active_fanouts=CLIENTS + 10, retention_s=0.5, ping_s=600)
    rng = random.Random(SEED)
    limits = httpx.Limits(max_connections=CLIENTS + 10, max_keepalive_connections=0)
    with serve_in_thread(directory, settings) as probe:
        async with httpx.AsyncClient(base_url=probe.base_url, timeout=60, limits=limits) as http:
            body = {"agents": [{"agent_id": "warm"}], "message": "go"}
            async with aconnect_sse(http, "POST", "/v1/fanouts", json=body, headers=SSE) as s:
                assert [e.event async for e in s.aiter_sse()][-1] == "fanout_done"
        await anyio.to_thread.run_sync(lambda: _settle(probe, probe.tasks()))
        baseline_tasks = probe.tasks()
        rss: list[float] = []
        for r in range(ROUNDS):
            fanout_ids: dict[str, str] = {}
            async with (
                httpx.AsyncClient(base_url=probe.base_url, timeout=60, limits=limits) as http,
                anyio.create_task_group() as tg,
            ):
                for i in range(CLIENTS):
                    agents = [f"p{r}-{i}", f"s{r}-{i}"]
                    tg.start_soon(_client, http, agents, rng.randint(0, 30), fanout_ids)
            await anyio.to_thread.run_sync(lambda: _settle(probe, baseline_tasks))
            _check_round(probe, r, fanout_ids)
            # Nothing in the server keeps a source (and so a fan-out) alive.
            refs = [weakref.ref(s) for s in directory.created]
            directory.created.clear()
            gc.collect()
            alive = [ref() for ref in refs if ref() is not None]
            assert not alive, f"{len(alive)} sources still referenced, e.g. {alive[0]!r}"
            rss.append(rss_mb())
        print(f"\nRSS per round (MB): {[round(x, 1) for x in rss]}; tasks {baseline_tasks}")
        assert max(rss[1:]) - rss[1] < RSS_SLACK_MB, rss
