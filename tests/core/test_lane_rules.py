"""The lane's rules: text events need a delta, idle agents end as stalled, the busy rule,
what a source tells about itself, and options as one typed object plus overrides.

Runs on asyncio and trio, like the rest of the core's tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import pytest

from orchestrator import (
    ConversationBusyError,
    Event,
    FanOutOptions,
    ScriptedSource,
    SourceEvent,
    collect,
    open_fanout,
    open_hub,
)

from ._helpers import assert_stream_invariants, terminal

pytestmark = pytest.mark.timeout(120, method="thread")


class ListSource:
    """Yields the given events, then (with ``hang``) waits until cancelled."""

    def __init__(
        self,
        agent_id: str,
        events: Sequence[tuple[str, dict[str, Any]]],
        *,
        hang: bool = False,
        conversation_key: str | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.label = agent_id
        self.events = list(events)
        self.hang = hang
        self.conversation_key = conversation_key
        self.info = info
        self.cancel_calls = 0
        self.started = anyio.Event()

    async def stream(self, message: str) -> AsyncIterator[SourceEvent]:
        self.started.set()
        for etype, data in self.events:
            yield SourceEvent(etype, data)  # type: ignore[arg-type]
        if self.hang:
            await anyio.sleep_forever()

    async def cancel(self) -> None:
        self.cancel_calls += 1


async def run(sources: Sequence[Any], **options: Any) -> list[Event]:
    async with open_fanout(sources, "hi", **options) as fanout:
        return [event async for event in fanout]


def tokens(n: int, mid: str = "m") -> list[tuple[str, dict[str, Any]]]:
    return [("content", {"delta": f"t{i} ", "message_id": mid}) for i in range(n)]


# -- a text event needs its delta, the first and the later ones alike ------------------------


@pytest.mark.parametrize("position", [0, 1, 5])
@pytest.mark.parametrize("kind", ["content", "reasoning"])
async def test_a_text_event_without_delta_ends_the_agent_naming_the_field(
    position: int, kind: str
) -> None:
    events = tokens(6)
    events.insert(position, (kind, {"message_id": "m"}))
    bad = ListSource("bad", events)
    good = ScriptedSource("good", ["fine"])
    got = await run([bad, good])
    assert_stream_invariants(got, ["bad", "good"])
    end = terminal(got, "bad")
    assert end.type == "agent_error"
    assert end.get("code") == "invalid_event"
    assert "'delta'" in end.get("message")
    assert kind in end.get("message")
    # Everything before the bad event was delivered, nothing after it.
    text = "".join(e.delta for e in got if e.agent_id == "bad" and e.type == "content")
    assert text == "".join(d["delta"] for _, d in tokens(6)[:position])
    assert bad.cancel_calls == 1
    assert terminal(got, "good").type == "agent_done"


async def test_a_non_string_delta_is_refused_too() -> None:
    bad = ListSource("bad", [*tokens(2), ("content", {"delta": 7, "message_id": "m"})])
    end = terminal(await run([bad]), "bad")
    assert end.get("code") == "invalid_event"
    assert "int" in end.get("message")


# -- idle agents end as stalled --------------------------------------------------------------


async def test_an_agent_that_goes_quiet_ends_stalled_and_its_run_is_cancelled() -> None:
    quiet = ListSource("quiet", tokens(3), hang=True)
    busy = ScriptedSource("busy", ["a", "b", "c"], delay_s=0.05)
    got = await run([quiet, busy], idle_timeout_s=0.3)
    end = terminal(got, "quiet")
    assert end.type == "agent_error"
    assert end.get("code") == "stalled"
    assert end.get("retryable") is True
    assert "0.3 s" in end.get("message")
    assert quiet.cancel_calls == 1
    assert terminal(got, "busy").type == "agent_done"


async def test_an_agent_that_never_starts_ends_stalled() -> None:
    silent = ListSource("silent", [], hang=True)
    end = terminal(await run([silent], idle_timeout_s=0.2), "silent")
    assert end.get("code") == "stalled"


async def test_idle_timeout_zero_turns_it_off() -> None:
    quiet = ListSource("quiet", tokens(1), hang=True)
    async with open_fanout([quiet], "hi", idle_timeout_s=0, timeout_s=0.6) as fanout:
        events = [event async for event in fanout]
    end = terminal(events, "quiet")
    assert (end.type, end.get("reason")) == ("agent_cancelled", "timeout")


async def test_an_agent_paused_by_a_slow_reader_is_not_stalled() -> None:
    # 20 events into a buffer of 2: the producer is paused while the reader does not read.
    source = ScriptedSource("paced", [f"t{i} " for i in range(20)])
    async with open_fanout([source], "hi", buffer=2, overflow="block", idle_timeout_s=0.2) as f:
        events = [await f.__anext__()]
        await anyio.wait_all_tasks_blocked()
        assert f.status()["paced"].paused
        with anyio.fail_after(10):
            # The reader is away for several idle periods: the scenario under test.
            await anyio.sleep(0.8)
        events += [event async for event in f]
    assert terminal(events, "paced").type == "agent_done"
    assert "".join(e.delta for e in events if e.type == "content") == source.text


# -- the busy rule ----------------------------------------------------------------------------


async def test_a_second_fanout_on_a_busy_conversation_is_refused_before_it_starts() -> None:
    first = ListSource("a", tokens(1), hang=True, conversation_key="agent-a/default")
    again = ListSource("a", tokens(1), conversation_key="agent-a/default")
    other = ListSource("b", tokens(1), conversation_key="agent-b/default")
    async with open_fanout([first], "hi") as fanout:
        await fanout.__anext__()
        await first.started.wait()
        with pytest.raises(ConversationBusyError) as caught:
            async with open_fanout([again, other], "hi"):
                pytest.fail("the refused fan-out started")
        assert caught.value.agents == ["a"]
        assert "agent-a/default" in str(caught.value)
        assert not other.started.is_set()
        assert not again.started.is_set()
        # A different conversation of the same agent is free.
        side = ListSource("a2", tokens(2), conversation_key="agent-a/c-2")
        assert (await collect([side], "hi")).agents["a2"].state == "done"
        fanout.cancel()
    # Released when the first fan-out ended.
    result = await collect([again, other], "hi")
    assert {a.state for a in result.agents.values()} == {"done"}


async def test_one_conversation_twice_in_one_fanout_is_refused() -> None:
    x = ListSource("x", tokens(1), conversation_key="agent-a/default")
    y = ListSource("y", tokens(1), conversation_key="agent-a/default")
    with pytest.raises(ConversationBusyError) as caught:
        await collect([x, y], "hi")
    assert caught.value.agents == ["y"]
    # The refusal claimed nothing: the conversation is free.
    assert (await collect([x], "hi")).agents["x"].state == "done"


async def test_sources_without_a_conversation_key_claim_nothing() -> None:
    a, b = ScriptedSource("a", ["x"]), ScriptedSource("a", ["y"])
    assert (await collect([a], "hi")).agents["a"].text == "x"
    assert (await collect([b], "hi")).agents["a"].text == "y"


async def test_the_hub_refuses_a_busy_conversation_when_asked_to_start() -> None:
    async with open_hub() as hub:
        first = ListSource("a", tokens(1), hang=True, conversation_key="k")
        entry = hub.start([first], "hi")
        with pytest.raises(ConversationBusyError):
            hub.start([ListSource("a", tokens(1), conversation_key="k")], "hi")
        assert len(hub.recent()) == 1
        entry.cancel()
        await entry.wait()
        second = hub.start([ListSource("a", tokens(1), conversation_key="k")], "hi")
        await second.wait()
        assert second.summary()["agents"]["a"]["state"] == "done"


# -- what a source tells about itself ----------------------------------------------------------


@pytest.mark.parametrize("sends_start", [True, False])
async def test_source_info_reaches_fanout_start_and_agent_start(sends_start: bool) -> None:
    info = {"letta_agent_id": "agent-1", "conversation_id": "conv-9", "model": "m-2"}
    events = [("agent_start", {"run_id": "run-1"})] if sends_start else []
    source = ListSource("col-1", [*events, *tokens(2)], info=info)
    got = await run([source])
    (entry,) = got[0].get("agents")
    assert entry == {"agent_id": "col-1", "label": "col-1", **info}
    start = next(e for e in got if e.type == "agent_start")
    assert {k: start.get(k) for k in info} == info
    assert start.get("run_id") == ("run-1" if sends_start else None)


# -- options: one typed object, keyword overrides ----------------------------------------------


async def test_options_object_and_overrides() -> None:
    source = ScriptedSource("a", ["x"])
    opts = FanOutOptions(buffer=3, policy="first")
    async with open_fanout([source], "hi", opts, buffer=5) as fanout:
        assert fanout.options.buffer == 5
        assert fanout.options.policy == "first"
        assert [e.type async for e in fanout][-1] == "fanout_done"
    assert opts.buffer == 3  # the caller's object is left alone
