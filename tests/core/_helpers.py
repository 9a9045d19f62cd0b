"""Helpers for the core tests: checking the invariants of a merged stream."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

import sniffio

from orchestrator import Event, ScriptedSource

TERMINALS = {"agent_done", "agent_error", "agent_cancelled"}


def by_agent(events: Sequence[Event]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event.agent_id is not None:
            out[event.agent_id].append(event)
    return out


def joined_text(events: Sequence[Event], agent_id: str, kind: str = "content") -> str:
    return "".join(e.delta for e in events if e.agent_id == agent_id and e.type == kind)


def terminal(events: Sequence[Event], agent_id: str) -> Event:
    ends = [e for e in events if e.agent_id == agent_id and e.type in TERMINALS]
    assert len(ends) == 1, f"{agent_id} has {len(ends)} terminal events"
    return ends[0]


def assert_stream_invariants(events: Sequence[Event], agent_ids: Sequence[str]) -> None:
    """Tagging and order: seq 1..n per agent, index 0..N-1, one terminal each, start/done."""
    assert [e.index for e in events] == list(range(len(events)))
    assert events[0].type == "fanout_start"
    assert events[-1].type == "fanout_done"
    assert sum(e.type == "fanout_start" for e in events) == 1
    assert sum(e.type == "fanout_done" for e in events) == 1
    assert len({e.fanout_id for e in events}) == 1
    per_agent = by_agent(events)
    assert set(per_agent) == set(agent_ids)
    for agent_id, mine in per_agent.items():
        assert [e.seq for e in mine] == list(range(1, len(mine) + 1)), agent_id
        assert mine[0].type == "agent_start", agent_id
        assert mine[-1].type in TERMINALS, agent_id
        assert sum(e.type in TERMINALS for e in mine) == 1, agent_id


def assert_sources_released(sources: Sequence[ScriptedSource]) -> None:
    for source in sources:
        assert source.closed, f"{source.agent_id}: stream not closed"
        assert source.cancel_calls <= 1, (
            f"{source.agent_id}: cancel() called {source.cancel_calls}x"
        )


def task_count() -> int:
    """How many tasks exist in the running event loop (asyncio or trio)."""
    if sniffio.current_async_library() == "trio":
        import trio

        def count(task: trio.lowlevel.Task) -> int:
            return 1 + sum(
                count(child) for nursery in task.child_nurseries for child in nursery.child_tasks
            )

        root = trio.lowlevel.current_root_task()
        assert root is not None
        return count(root)
    return len(asyncio.all_tasks())
