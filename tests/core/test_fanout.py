"""Behaviour of the core fan-out engine (issue: core engine, behaviours 1-8).

Every test runs on asyncio and on trio: the engine only uses anyio, except for its
asyncio-only wake-ups (``orchestrator/_waiter.py``), whose portable fallback trio exercises.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio import wait_all_tasks_blocked

from orchestrator import (
    ConfigError,
    Event,
    FanOutStateError,
    Overflow,
    ScriptedSource,
    SourceEvent,
    UnknownAgentError,
    collect,
    open_fanout,
)

from ._helpers import (
    assert_sources_released,
    assert_stream_invariants,
    joined_text,
    task_count,
    terminal,
)

# A hang under trio does not answer pytest-timeout's default signal: stop the run instead.
pytestmark = pytest.mark.timeout(120, method="thread")


async def _run(sources: list[ScriptedSource], **options: Any) -> list[Event]:
    async with open_fanout(sources, "prompt", **options) as fanout:
        return [event async for event in fanout]


# 1. Tagging and order ------------------------------------------------------------------------


async def test_tagging_and_order() -> None:
    sources = [
        ScriptedSource("a", ["Hel", "lo", " world"], delay_s=0.001, label="Alpha"),
        ScriptedSource("b", ["Hi"]),
        ScriptedSource("c", [f"{n} " for n in range(50)]),
    ]
    events = await _run(sources)
    assert_stream_invariants(events, ["a", "b", "c"])
    for source in sources:
        assert joined_text(events, source.agent_id) == source.text
        assert terminal(events, source.agent_id).type == "agent_done"
    assert {e.label for e in events if e.agent_id == "a"} == {"Alpha"}
    start = events[0]
    assert [a["agent_id"] for a in start.get("agents")] == ["a", "b", "c"]
    assert events[-1].get("counts") == {"done": 3, "error": 0, "cancelled": 0}
    assert_sources_released(sources)
    assert all(s.cancel_calls == 0 for s in sources)


async def test_deltas_of_one_message_share_message_id() -> None:
    events = await _run([ScriptedSource("a", list("abcdef"))])
    ids = {e.message_id for e in events if e.type == "content"}
    assert len(ids) == 1
    assert ids != {None}


async def test_result_after_the_block() -> None:
    sources = [ScriptedSource("a", ["x", "y"], reasoning="hmm"), ScriptedSource("b", ["z"])]
    async with open_fanout(sources, "prompt") as fanout:
        with pytest.raises(FanOutStateError, match="still running"):
            fanout.result()
        async for _ in fanout:
            pass
    result = fanout.result()
    assert result.texts == {"a": "xy", "b": "z"}
    assert result["a"].reasoning == "hmm"
    assert result["a"].stop_reason == "end_turn"
    assert result["a"].metrics.duration_s is not None
    assert result["a"].usage["completion_tokens"] == 2
    assert result.ok


async def test_collect_returns_final_answers() -> None:
    result = await collect([ScriptedSource("a", ["1", "2"]), ScriptedSource("b", ["3"])], "p")
    assert result.texts == {"a": "12", "b": "3"}
    assert [r.agent_id for r in result] == ["a", "b"]


# 2. Isolation ----------------------------------------------------------------------------------


async def test_a_failing_agent_does_not_disturb_the_others() -> None:
    good = [ScriptedSource(f"g{n}", [f"{n}-{k} " for k in range(30)]) for n in range(3)]
    bad = ScriptedSource("bad", ["x"] * 30, fail_at=5)
    events = await _run([*good, bad])
    assert_stream_invariants(events, ["g0", "g1", "g2", "bad"])
    end = terminal(events, "bad")
    assert end.type == "agent_error"
    assert end.get("code") == "scripted_failure"
    assert "token 5" in end.get("message")
    for source in good:
        assert joined_text(events, source.agent_id) == source.text
        assert terminal(events, source.agent_id).type == "agent_done"
    assert_sources_released([*good, bad])


async def test_an_agent_raising_an_unexpected_exception_is_reported() -> None:
    class Broken(ScriptedSource):
        async def cancel(self) -> None:
            await super().cancel()
            raise RuntimeError("cancel failed too")

    bad = Broken("bad", ["x"], stall_at=0)
    good = ScriptedSource("good", ["fine"])
    events = await _run([bad, good], timeout_s=0.05)
    assert terminal(events, "bad").get("reason") == "timeout"
    assert joined_text(events, "good") == "fine"


# 3. Backpressure -------------------------------------------------------------------------------


async def test_block_pauses_the_source_and_bounds_the_buffer() -> None:
    source = ScriptedSource("a", [f"{n}," for n in range(500)])
    async with open_fanout([source], "p", buffer=8, overflow="block") as fanout:
        first = await fanout.__anext__()
        assert first.type == "fanout_start"
        await wait_all_tasks_blocked()
        status = fanout.status()["a"]
        assert status.buffered == 8
        assert status.paused
        produced = source.produced
        assert produced <= 8 + 1
        await wait_all_tasks_blocked()
        assert source.produced == produced, "a paused source must not be read"
        seen_max = 0
        events = []
        async for event in fanout:
            events.append(event)
            seen_max = max(seen_max, fanout.status()["a"].buffered)
        assert seen_max <= 8
    contents = [e for e in events if e.type == "content"]
    assert len(contents) == 500, "block must not merge anything"
    assert fanout.status()["a"].coalesced == 0
    assert joined_text(events, "a") == source.text


async def test_coalesce_keeps_all_text_with_a_bounded_buffer() -> None:
    source = ScriptedSource("a", [f"{n}," for n in range(2000)])
    other = ScriptedSource("b", ["b"] * 100)
    async with open_fanout([source, other], "p", buffer=8) as fanout:
        first = await fanout.__anext__()
        await wait_all_tasks_blocked()
        status = fanout.status()
        assert status["a"].buffered <= 8
        assert status["b"].buffered <= 8
        assert status["a"].coalesced > 0
        events = [first]
        async for event in fanout:
            events.append(event)
            assert all(s.buffered <= 8 for s in fanout.status().values())
    assert joined_text(events, "a") == source.text
    assert joined_text(events, "b") == other.text
    assert len([e for e in events if e.agent_id == "a"]) < 100
    assert_stream_invariants(events, ["a", "b"])


async def test_coalesce_never_merges_across_messages_or_kinds() -> None:
    source = ScriptedSource(
        "a", ["t"] * 50, reasoning=["r"] * 50, tool_calls=[{"name": "f", "result": 1}]
    )
    async with open_fanout([source], "p", buffer=2) as fanout:
        await fanout.__anext__()
        await wait_all_tasks_blocked()
        events = [e async for e in fanout]
    kinds = [e.type for e in events]
    assert kinds.index("tool_call") > max(i for i, k in enumerate(kinds) if k == "reasoning")
    assert joined_text(events, "a", "reasoning") == "r" * 50
    assert joined_text(events, "a") == "t" * 50


# 4. Fairness -----------------------------------------------------------------------------------


async def test_two_ready_agents_share_every_window() -> None:
    buffer = 4
    a = ScriptedSource("a", ["a"] * 300)
    b = ScriptedSource("b", ["b"] * 300)
    events = await _run([a, b], buffer=buffer, overflow="block")
    body = [e for e in events if e.type in ("content",)]
    first_end = min(
        i for i, e in enumerate(body) if sum(x.agent_id == e.agent_id for x in body[: i + 1]) == 300
    )
    window = 2 * buffer
    for start in range(0, first_end - window):
        agents = {e.agent_id for e in body[start : start + window]}
        assert agents == {"a", "b"}, f"window at {start} only has {agents}"


async def test_a_fast_agent_does_not_starve_a_slow_one() -> None:
    fast = ScriptedSource("fast", ["f"] * 5000)
    slow = ScriptedSource("slow", ["s"] * 5, delay_s=0.001)
    events = await _run([fast, slow], buffer=16, overflow="block")
    done_slow = terminal(events, "slow").index
    done_fast = terminal(events, "fast").index
    assert done_slow < done_fast


# 5. Stalls and deadlines -----------------------------------------------------------------------


async def test_a_stalled_agent_times_out_without_delaying_the_others() -> None:
    stalled = ScriptedSource("stalled", ["never"], stall_at=0)
    others = [ScriptedSource(f"o{n}", ["ok"] * 20) for n in range(3)]
    events = await _run([stalled, *others], first_token_timeout_s=0.3)
    end = terminal(events, "stalled")
    assert end.type == "agent_cancelled"
    assert end.get("reason") == "timeout"
    assert stalled.cancel_calls == 1
    for source in others:
        assert terminal(events, source.agent_id).index < end.index
        assert joined_text(events, source.agent_id) == source.text
    assert_sources_released([stalled, *others])


async def test_total_timeout_stops_a_slow_agent_mid_stream() -> None:
    slow = ScriptedSource("slow", ["x"] * 1000, delay_s=0.005)
    quick = ScriptedSource("quick", ["y"] * 3)
    events = await _run([slow, quick], timeout_s=0.2, first_token_timeout_s=0.15)
    end = terminal(events, "slow")
    assert (end.type, end.get("reason")) == ("agent_cancelled", "timeout")
    assert 0 < len(joined_text(events, "slow")) < 1000
    assert slow.cancel_calls == 1
    assert terminal(events, "quick").type == "agent_done"


async def test_first_token_timeout_is_lifted_after_the_first_token() -> None:
    steady = ScriptedSource("steady", ["x"] * 30, delay_s=0.01)
    events = await _run([steady], first_token_timeout_s=0.1)
    assert terminal(events, "steady").type == "agent_done"
    assert joined_text(events, "steady") == steady.text


# 6. Cancellation -------------------------------------------------------------------------------


async def test_cancel_one_agent() -> None:
    a = ScriptedSource("a", ["a"] * 1000, delay_s=0.001)
    others = [ScriptedSource("b", ["b"] * 50), ScriptedSource("c", ["c"] * 50, delay_s=0.001)]
    events = []
    async with open_fanout([a, *others], "p") as fanout:
        async for event in fanout:
            events.append(event)
            if event.agent_id == "a" and event.type == "content":
                assert fanout.cancel("a") is True
                assert fanout.cancel("a") is False
    end = terminal(events, "a")
    assert (end.type, end.get("reason")) == ("agent_cancelled", "user")
    assert a.cancel_calls == 1
    assert a.closed
    for source in others:
        assert joined_text(events, source.agent_id) == source.text
        assert source.cancel_calls == 0
    assert_stream_invariants(events, ["a", "b", "c"])
    assert fanout.result()["a"].cancel_reason == "user"


async def test_cancel_all() -> None:
    sources = [ScriptedSource(n, ["x"] * 1000, delay_s=0.001) for n in "abc"]
    events = []
    async with open_fanout(sources, "p") as fanout:
        async for event in fanout:
            events.append(event)
            if event.type == "content":
                fanout.cancel()
    for source in sources:
        assert terminal(events, source.agent_id).get("reason") == "user"
        assert source.cancel_calls == 1
    assert_sources_released(sources)
    assert events[-1].get("counts") == {"done": 0, "error": 0, "cancelled": 3}


async def test_cancel_unknown_agent_names_it() -> None:
    async with open_fanout([ScriptedSource("a", ["x"])], "p") as fanout:
        with pytest.raises(UnknownAgentError, match=r"'zz'.*agents: a"):
            fanout.cancel("zz")
        async for _ in fanout:
            pass


async def test_cancel_after_done_is_a_no_op() -> None:
    source = ScriptedSource("a", ["x"])
    async with open_fanout([source], "p") as fanout:
        async for _ in fanout:
            pass
        assert fanout.cancel() is False
    assert source.cancel_calls == 0


async def _leave_early(how: str) -> list[ScriptedSource]:
    sources = [ScriptedSource(n, ["x"] * 500, delay_s=0.001) for n in "abc"]
    if how == "break":
        async with open_fanout(sources, "p") as fanout:
            async for event in fanout:
                if event.type == "content":
                    break
    elif how == "exception":

        async def consume_and_fail() -> None:
            async with open_fanout(sources, "p") as fanout:
                async for event in fanout:
                    if event.type == "content":
                        raise LookupError("consumer failed")

        with pytest.raises(LookupError):
            await consume_and_fail()
        return sources
    else:
        with anyio.CancelScope() as scope:
            async with open_fanout(sources, "p") as fanout:
                async for event in fanout:
                    if event.type == "content":
                        scope.cancel()
        assert scope.cancelled_caught
    assert all(s.state == "cancelled" for s in fanout.result())
    assert {r.cancel_reason for r in fanout.result()} == {"disconnect"}
    return sources


@pytest.mark.parametrize("how", ["break", "exception", "outer_cancel"])
async def test_leaving_early_cancels_every_source_and_leaks_nothing(how: str) -> None:
    before = task_count()
    sources = await _leave_early(how)
    for source in sources:
        assert source.cancel_calls == 1, source.agent_id
        assert source.closed, source.agent_id
    assert task_count() == before


class _Endless:
    """A source that never suspends and never ends."""

    agent_id = "endless"
    label = "endless"

    def __init__(self) -> None:
        self.closed = False

    async def stream(self, message: str) -> AsyncIterator[SourceEvent]:
        try:
            while True:
                yield SourceEvent.content("x", "m")
        finally:
            self.closed = True

    async def cancel(self) -> None:
        return None


@pytest.mark.parametrize("overflow", ["block", "coalesce"])
async def test_leaving_early_stops_a_source_that_never_suspends(overflow: Overflow) -> None:
    # Its producer fills the buffer and waits; leaving must not let it spin on a full
    # buffer that nobody drains (that hung the event loop for good).
    source = _Endless()
    async with open_fanout([source], "p", buffer=4, overflow=overflow) as fanout:
        async for event in fanout:
            if event.type == "content":
                break
    assert source.closed
    assert fanout.result().agents["endless"].state == "cancelled"


async def test_iteration_after_the_block_stops() -> None:
    async with open_fanout([ScriptedSource("a", ["x"] * 100, delay_s=0.001)], "p") as fanout:
        await fanout.__anext__()
    with pytest.raises(StopAsyncIteration):
        await fanout.__anext__()


# 7. Policies -----------------------------------------------------------------------------------


async def test_policy_first() -> None:
    fast = ScriptedSource("fast", ["done"])
    slow = [ScriptedSource(n, ["x"] * 500, delay_s=0.002) for n in ("s1", "s2")]
    events = await _run([*slow, fast], policy="first")
    assert terminal(events, "fast").type == "agent_done"
    for source in slow:
        end = terminal(events, source.agent_id)
        assert (end.type, end.get("reason")) == ("agent_cancelled", "policy")
        assert source.cancel_calls == 1
    assert_stream_invariants(events, ["s1", "s2", "fast"])


async def test_policy_quorum() -> None:
    quick = [ScriptedSource(n, ["q"]) for n in ("q1", "q2")]
    slow = ScriptedSource("slow", ["x"] * 500, delay_s=0.002)
    events = await _run([slow, *quick], policy="quorum:2")
    assert [terminal(events, s.agent_id).type for s in quick] == ["agent_done"] * 2
    assert terminal(events, "slow").get("reason") == "policy"


async def test_failures_do_not_count_towards_the_quorum() -> None:
    failing = ScriptedSource("f", ["x"], fail_at=0)
    ok = [ScriptedSource("a", ["y"] * 5), ScriptedSource("b", ["y"] * 500, delay_s=0.002)]
    events = await _run([failing, *ok], policy="first")
    assert terminal(events, "f").type == "agent_error"
    ends = sorted(terminal(events, s.agent_id).type for s in ok)
    assert ends == ["agent_cancelled", "agent_done"]


# 8. Bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sources", "options", "needle"),
    [
        ([], {}, "at least one source"),
        ([ScriptedSource("a", []), ScriptedSource("a", [])], {}, "duplicate agent id 'a'"),
        ([ScriptedSource("a", [])], {"buffer": 0}, "buffer must be an integer >= 1"),
        ([ScriptedSource("a", [])], {"overflow": "drop"}, "overflow must be one of"),
        ([ScriptedSource("a", [])], {"policy": "most"}, "policy must be"),
        ([ScriptedSource("a", [])], {"policy": "quorum:0"}, "policy must be"),
        ([ScriptedSource("a", [])], {"policy": "quorum:2"}, "needs 2 agents"),
        ([ScriptedSource("a", [])], {"timeout_s": -1}, "timeout_s must be a finite number > 0"),
        ([ScriptedSource("a", [])], {"timeout_s": math.inf}, "timeout_s must be a finite"),
        ([ScriptedSource("a", [])], {"idle_timeout_s": -1}, "idle_timeout_s must be"),
        ([ScriptedSource("a", [])], {"bufer": 3}, "unknown fan-out option.*bufer"),
        ([ScriptedSource("a", [])], {"first_token_timeout_s": 0}, "first_token_timeout_s"),
        (["not a source"], {}, r"sources\[0\] is not a Source"),
    ],
)
async def test_bad_input_fails_before_anything_starts(
    sources: list[Any], options: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        async with open_fanout(sources, "p", **options):
            pytest.fail("must not start")
    for source in sources:
        if isinstance(source, ScriptedSource):
            assert source.streams_opened == 0


def test_scripted_source_validates_its_arguments() -> None:
    with pytest.raises(ConfigError, match="delay_s"):
        ScriptedSource("a", [], delay_s=-1)
    with pytest.raises(ConfigError, match="fail_at"):
        ScriptedSource("a", [], fail_at=-2)


class _PlainSource:
    """A minimal Source: yields deltas and simply ends (no agent_start, no agent_done)."""

    def __init__(self, agent_id: str, tokens: list[str]) -> None:
        self.agent_id = agent_id
        self.label = agent_id
        self.tokens = tokens
        self.cancel_calls = 0

    async def stream(self, message: str) -> AsyncIterator[SourceEvent]:
        for token in self.tokens:
            yield SourceEvent.content(token, "m")

    async def cancel(self) -> None:
        self.cancel_calls += 1


async def test_a_source_that_simply_ends_is_done() -> None:
    plain = _PlainSource("plain", ["a", "b"])
    empty = _PlainSource("empty", [])
    async with open_fanout([plain, empty], "p") as fanout:
        events = [e async for e in fanout]
    assert_stream_invariants(events, ["plain", "empty"])
    for source in (plain, empty):
        end = terminal(events, source.agent_id)
        assert (end.type, end.get("stop_reason")) == ("agent_done", "end_turn")
        assert source.cancel_calls == 0
    assert joined_text(events, "plain") == "ab"
    assert fanout.result()["plain"].run_id is None


async def test_the_merger_never_starves_the_event_loop() -> None:
    # A consumer that never awaits anything else, over a full buffer that never runs dry:
    # the merger itself must still let other tasks run now and then.
    source = ScriptedSource("dense", ["x"] * 6000)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.lowlevel.checkpoint()
            ticks += 1

    async with anyio.create_task_group() as tg:
        async with open_fanout([source], "p", buffer=6000) as fanout:
            await fanout.__anext__()
            await wait_all_tasks_blocked()
            assert fanout.status()["dense"].buffered > 5000
            tg.start_soon(ticker)
            before = ticks
            for _ in range(3000):
                await fanout.__anext__()
            assert ticks > before, "3000 events were merged without yielding once"
            fanout.cancel()
            async for _ in fanout:
                pass
        tg.cancel_scope.cancel()
