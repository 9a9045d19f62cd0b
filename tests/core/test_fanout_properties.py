"""Property test: random sources, buffers, failures and cancel points keep the invariants."""

from __future__ import annotations

from dataclasses import dataclass

from anyio import wait_all_tasks_blocked
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import Overflow, ScriptedSource, open_fanout

from ._helpers import (
    assert_sources_released,
    assert_stream_invariants,
    joined_text,
    task_count,
    terminal,
)


@dataclass
class Plan:
    tokens: list[str]
    delay_s: float
    fail_at: int | None
    stall_at: int | None
    cancel_after: int | None


plans = st.builds(
    Plan,
    tokens=st.lists(st.text(min_size=0, max_size=4), min_size=0, max_size=25),
    delay_s=st.sampled_from([0.0, 0.0, 0.0005]),
    fail_at=st.none() | st.integers(0, 25),
    stall_at=st.none() | st.integers(0, 25),
    cancel_after=st.none() | st.integers(0, 40),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    agent_plans=st.lists(plans, min_size=1, max_size=4),
    buffer=st.integers(1, 6),
    overflow=st.sampled_from(["coalesce", "block"]),
    stall_consumer_every=st.integers(1, 15),
)
async def test_invariants_hold_for_random_fanouts(
    agent_plans: list[Plan], buffer: int, overflow: Overflow, stall_consumer_every: int
) -> None:
    before = task_count()
    sources = [
        ScriptedSource(
            f"a{n}",
            plan.tokens,
            delay_s=plan.delay_s,
            fail_at=plan.fail_at,
            stall_at=plan.stall_at,
        )
        for n, plan in enumerate(agent_plans)
    ]
    cancelled_by_us: set[str] = set()
    events = []
    async with open_fanout(
        sources, "p", buffer=buffer, overflow=overflow, timeout_s=0.25
    ) as fanout:
        async for event in fanout:
            events.append(event)
            if len(events) % stall_consumer_every == 0:
                await wait_all_tasks_blocked()
            for status in fanout.status().values():
                assert status.buffered <= buffer
                if overflow == "block":
                    assert status.coalesced == 0
            if event.agent_id is not None:
                plan = agent_plans[int(event.agent_id[1:])]
                wants_cancel = plan.cancel_after is not None and event.seq == plan.cancel_after
                if wants_cancel and fanout.cancel(event.agent_id):
                    cancelled_by_us.add(event.agent_id)

    assert_stream_invariants(events, [s.agent_id for s in sources])
    assert_sources_released(sources)
    assert task_count() == before
    for source, plan in zip(sources, agent_plans, strict=True):
        end = terminal(events, source.agent_id)
        text = joined_text(events, source.agent_id)
        assert source.text.startswith(text)
        if end.type == "agent_done":
            assert text == source.text
            assert source.cancel_calls == 0
        elif end.type == "agent_error":
            assert plan.fail_at is not None
            assert text == "".join(plan.tokens[: plan.fail_at])
        else:
            assert end.get("reason") in ("user", "timeout")
            assert source.cancel_calls == 1
            if end.get("reason") == "user":
                assert source.agent_id in cancelled_by_us
        if overflow == "block":
            contents = [e for e in events if e.agent_id == source.agent_id and e.type == "content"]
            assert len(contents) <= len(plan.tokens)
