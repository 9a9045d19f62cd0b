"""FanOutHub: background runs, retention, capacity, cancel and on_disconnect."""

from __future__ import annotations

import pytest

from orchestrator import (
    CapacityError,
    ConfigError,
    FanOutExpiredError,
    FanOutOptions,
    ScriptedSource,
    UnknownAgentError,
    UnknownFanOutError,
    open_hub,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def quick(agent_id: str) -> ScriptedSource:
    return ScriptedSource(agent_id, ["a", "b"])


def stalling(agent_id: str) -> ScriptedSource:
    return ScriptedSource(agent_id, ["a", "b"], stall_at=1)


async def test_runs_in_background_and_retains_every_event() -> None:
    async with open_hub() as hub:
        entry = hub.start([quick("x"), quick("y")], "hi")
        await entry.wait()
        events = entry.log.snapshot()
        assert [e.index for e in events] == list(range(len(events)))
        assert events[0].type == "fanout_start"
        assert events[-1].type == "fanout_done"
        assert hub.get(entry.fanout_id) is entry
        summary = entry.summary()
        assert summary["state"] == "finished"
        assert summary["agents"]["x"]["state"] == "done"
        assert hub.recent() == [entry]


async def test_finished_fanouts_expire_after_retention() -> None:
    clock = Clock()
    async with open_hub(retention_s=10, clock=clock) as hub:
        entry = hub.start([quick("x")], "hi")
        await entry.wait()
        clock.now += 9.9
        assert hub.get(entry.fanout_id) is entry
        clock.now += 0.2
        with pytest.raises(FanOutExpiredError):
            hub.get(entry.fanout_id)
        with pytest.raises(UnknownFanOutError):
            hub.get("f-never")


async def test_capacity_is_enforced_before_starting() -> None:
    async with open_hub(max_active=1, retry_after_s=3) as hub:
        first = hub.start([stalling("x")], "hi")
        with pytest.raises(CapacityError) as info:
            hub.start([quick("y")], "hi")
        assert info.value.retry_after_s == 3
        assert first.cancel()
        await first.wait()
        hub.start([quick("y")], "hi")


async def test_bad_input_is_refused() -> None:
    async with open_hub() as hub:
        with pytest.raises(ConfigError, match="duplicate"):
            hub.start([quick("x"), quick("x")], "hi")
        with pytest.raises(ConfigError, match="quorum"):
            hub.start([quick("x")], "hi", FanOutOptions(policy="quorum:2"))
        with pytest.raises(ConfigError, match="at least one"):
            hub.start([], "hi")


async def test_cancel_one_agent_shows_in_the_stream() -> None:
    async with open_hub() as hub:
        a, b = stalling("a"), quick("b")
        entry = hub.start([a, b], "hi")
        with pytest.raises(UnknownAgentError):
            entry.cancel("nope")
        assert entry.cancel("a")
        await entry.wait()
        ends = {e.agent_id: e for e in entry.log.snapshot() if e.is_terminal}
        assert ends["a"].type == "agent_cancelled"
        assert ends["a"].get("reason") == "user"
        assert ends["b"].type == "agent_done"
        assert a.cancel_calls == 1
        assert a.closed
        assert not entry.cancel()


async def test_last_watcher_leaving_cancels_unless_continue() -> None:
    async with open_hub() as hub:
        src = stalling("a")
        entry = hub.start([src], "hi", on_disconnect="cancel")
        async with entry.watch() as sub:
            async for event in sub:
                if event.type == "content":
                    break
        await entry.wait()
        end = next(e for e in entry.log.snapshot() if e.is_terminal)
        assert end.get("reason") == "disconnect"
        assert src.cancel_calls == 1

        kept = stalling("b")
        entry2 = hub.start([kept], "hi", on_disconnect="continue")
        async with entry2.watch() as sub:
            async for event in sub:
                if event.type == "content":
                    break
        assert entry2.running
        assert kept.cancel_calls == 0
        entry2.cancel()
        await entry2.wait()


async def test_leaving_the_hub_cancels_running_fanouts() -> None:
    src = stalling("a")
    async with open_hub() as hub:
        entry = hub.start([src], "hi", on_disconnect="continue")
    assert not entry.running
    assert src.cancel_calls == 1
    assert src.closed


async def test_client_gone_before_watching_applies_on_disconnect() -> None:
    async with open_hub() as hub:
        src = stalling("a")
        entry = hub.start([src], "hi", on_disconnect="cancel")
        async with entry.watch():
            assert not entry.client_gone()  # someone still watches
        await entry.wait()
        assert src.cancel_calls == 1

        other = stalling("b")
        entry = hub.start([other], "hi", on_disconnect="cancel")
        assert entry.client_gone()
        await entry.wait()
        assert not entry.client_gone()
        assert other.cancel_calls == 1
