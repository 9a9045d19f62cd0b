"""Fault: the real Letta server process is killed mid-stream.

Every agent must end with ``agent_error`` ``unavailable`` (retryable), the fan-out must end
with ``fanout_done``, the API must keep answering ``/healthz`` (``degraded`` while Letta is
down), and after the stack is brought back a new fan-out through the same API completes with
the expected text. The stack is restarted by a finalizer even when the test fails, because
the other Letta tests of the session share it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from api import ApiSettings, create_app
from orchestrator import Event
from orchestrator.stack._stack import StackInfo, ensure_stack, stack_status, stack_up
from orchestrator.testing._modelserver import expected_answer
from tests._servers import serve_app
from tests.letta.conftest import CreateAgent

pytestmark = [pytest.mark.letta, pytest.mark.slow]

PERSONAS = ("A terse critic.", "A cheerful poet.", "A careful judge.")
SSE = {"Accept": "text/event-stream"}
# Slow, long answers: the kill lands while every agent is still streaming.
LONG = "Tell a long story [[tps=5 words=60]]"
SHORT = "Say something short [[words=6]]"
TERMINALS = ("agent_done", "agent_error", "agent_cancelled")


def _letta_pid() -> int:
    row = next(r for r in stack_status() if r.name == "letta")
    assert row.running, f"the Letta server is not running: {row}"
    assert row.pid is not None
    return row.pid


def _kill_letta(pid: int) -> None:
    # SIGKILL the whole process group (the stack starts the server in its own session): no
    # graceful shutdown, the connections just drop, as when the machine or container dies.
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if this session started it
        if not any(r.name == "letta" and r.running for r in stack_status()):
            return
        assert time.monotonic() < deadline, "the killed Letta server is still running"
        time.sleep(0.05)  # polling a real condition (the process is gone), with a deadline


@pytest.fixture
def restore_stack(letta_stack: StackInfo, scripted_agent: CreateAgent) -> Iterator[CreateAgent]:
    """``scripted_agent``, and the stack brought back up after the test, whatever happened.

    Torn down before ``scripted_agent``, whose teardown deletes the agents on the server.
    """
    try:
        yield scripted_agent
    finally:
        stack_up()


async def _read_until(
    stream: AsyncIterator[ServerSentEvent],
    events: list[Event],
    done: Callable[[list[Event]], bool],
    timeout_s: float,
    what: str,
) -> None:
    with anyio.fail_after(timeout_s):
        async for sse in stream:
            events.append(Event.from_json(sse.data))
            if done(events):
                return
    raise AssertionError(f"the stream ended before {what}")


@pytest.mark.timeout(300)  # a cold restart of the Letta server takes 15-60 s on 2 busy cores
async def test_killing_letta_mid_stream_ends_every_agent_unavailable_and_recovers(
    letta_stack: StackInfo, restore_stack: CreateAgent
) -> None:
    scripted_agent = restore_stack
    ids = [await scripted_agent(p) for p in PERSONAS]
    body: dict[str, Any] = {
        "agents": [{"agent_id": a, "label": f"agent{n}"} for n, a in enumerate(ids)],
        "message": LONG,
    }
    app = create_app(ApiSettings(letta_base_url=letta_stack.base_url, health_timeout_s=5.0))
    events: list[Event] = []
    async with serve_app(app) as base, httpx.AsyncClient(base_url=base, timeout=60) as http:
        assert (await http.get("/healthz")).json()["status"] == "ok"
        async with aconnect_sse(http, "POST", "/v1/fanouts", json=body, headers=SSE) as source:
            assert source.response.status_code == 200
            stream = source.aiter_sse()

            def all_answering(seen: list[Event]) -> bool:
                return {e.agent_id for e in seen if e.type == "content"} == set(ids)

            await _read_until(stream, events, all_answering, 90, "every agent answered")
            await anyio.to_thread.run_sync(_kill_letta, _letta_pid())
            killed_at = len(events)

            def fanout_done(seen: list[Event]) -> bool:
                return seen[-1].type == "fanout_done"

            await _read_until(stream, events, fanout_done, 60, "fanout_done")

        terminals = {e.agent_id: e for e in events if e.type in TERMINALS}
        assert set(terminals) == set(ids)
        for agent_id, event in terminals.items():
            assert event.type == "agent_error", (agent_id, event.to_dict())
            assert event.get("code") == "unavailable", event.to_dict()
            assert event.get("retryable") is True
            assert event.index >= killed_at
        # Nothing after the kill is an answer that ended normally, and the text so far is a
        # prefix of the expected answer.
        for agent_id, persona in zip(ids, PERSONAS, strict=True):
            text = "".join(
                str(e.get("delta"))
                for e in events
                if e.agent_id == agent_id and e.type == "content"
            )
            assert text
            assert expected_answer(persona, LONG).startswith(text)
        assert sum(e.type == "fanout_done" for e in events) == 1
        assert events[-1].get("counts") == {"done": 0, "error": 3, "cancelled": 0}

        # The API itself stays up: healthy, reporting Letta as down.
        health = await http.get("/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["letta"]["ok"] is False
        assert health.json()["active_fanouts"] == 0

        # Letta comes back (a fresh process): the same API serves a new fan-out.
        await ensure_stack()
        assert (await http.get("/healthz")).json()["status"] == "ok"
        after: list[Event] = []
        body["message"] = SHORT
        async with aconnect_sse(http, "POST", "/v1/fanouts", json=body, headers=SSE) as source:
            with anyio.fail_after(90):
                async for sse in source.aiter_sse():
                    after.append(Event.from_json(sse.data))
        done = [e for e in after if e.type == "agent_done"]
        assert {e.agent_id for e in done} == set(ids)
        for agent_id, persona in zip(ids, PERSONAS, strict=True):
            text = "".join(
                str(e.get("delta")) for e in after if e.agent_id == agent_id and e.type == "content"
            )
            assert text == expected_answer(persona, SHORT)
