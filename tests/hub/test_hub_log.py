"""EventLog: replay + live without gaps or duplicates, bounded, backpressure, expiry."""

from __future__ import annotations

import anyio
import pytest

from orchestrator import ConfigError, Event, EventLog, FanOutExpiredError, FanOutStateError


def ev(index: int) -> Event:
    return Event("content", "f-1", "a", "a", index + 1, index, 0.0, {"delta": str(index)})


async def fill(log: EventLog, n: int) -> None:
    for i in range(log.next_index, log.next_index + n):
        await log.append(ev(i))


async def test_replay_then_live_has_no_gap_or_duplicate() -> None:
    log = EventLog()
    await fill(log, 3)
    seen: list[int] = []
    async with anyio.create_task_group() as tg:

        async def read() -> None:
            async with log.subscribe(after=0) as sub:
                async for event in sub:
                    seen.append(event.index)

        tg.start_soon(read)
        await fill(log, 4)
        log.close()
    assert seen == list(range(1, 7))


async def test_subscriber_ends_after_close_and_reached_end() -> None:
    log = EventLog()
    await fill(log, 2)
    log.close()
    log.close()
    sub = log.subscribe()
    assert [e.index async for e in sub] == [0, 1]
    assert sub.reached_end
    assert sub.last_index == 1
    await sub.aclose()
    await sub.aclose()
    with pytest.raises(FanOutStateError):
        await log.append(ev(2))


async def test_full_log_drops_oldest_when_no_reader_needs_it() -> None:
    log = EventLog(max_events=3)
    await fill(log, 5)
    assert (log.first_index, log.next_index) == (2, 5)
    assert [e.index for e in log.snapshot(after=1)] == [2, 3, 4]
    with pytest.raises(FanOutExpiredError, match=r"events 1\.\.1"):
        log.subscribe(after=0)
    with pytest.raises(FanOutExpiredError):
        log.check(-1)


async def test_full_log_waits_for_a_slow_reader() -> None:
    log = EventLog(max_events=2)
    sub = log.subscribe()
    await fill(log, 2)
    appended = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def append_third() -> None:
            await log.append(ev(2))
            appended.set()

        tg.start_soon(append_third)
        await anyio.wait_all_tasks_blocked()
        assert not appended.is_set()  # the reader still needs event 0
        assert [e.index for e in sub.read_ready()] == [0, 1]
        await appended.wait()
    assert (log.first_index, log.next_index) == (1, 3)
    assert [e.index for e in sub.read_ready()] == [2]
    sub.close()


async def test_closing_a_reader_releases_the_appender() -> None:
    log = EventLog(max_events=1)
    sub = log.subscribe()
    await log.append(ev(0))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(log.append, ev(1))
            await anyio.wait_all_tasks_blocked()
            assert log.next_index == 1
            sub.close()
    assert log.next_index == 2


async def test_append_checks_the_index() -> None:
    log = EventLog()
    with pytest.raises(ValueError, match="expected event index 0"):
        await log.append(ev(1))
    with pytest.raises(ConfigError):
        EventLog(max_events=0)
