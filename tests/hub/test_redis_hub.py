"""The Redis hub against a real redis-server: two hubs in one process play two replicas.

Real uvicorn replicas and Letta are in tests/replicas; here the hub's own rules are checked
with scripted sources, fast.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from orchestrator import (
    ConfigError,
    ConversationBusyError,
    Event,
    HubUnavailableError,
    UnknownFanOutError,
)
from orchestrator._hub._redis import RedisFanOutHub, open_redis_hub
from orchestrator._hub._redis_wire import redact_url
from orchestrator.testing import ScriptedSource
from tests._redis import RedisProcess
from tests._wait import wait_until


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py's client is asyncio only


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def hubs(
    redis_server: RedisProcess, prefix: str
) -> AsyncIterator[tuple[RedisFanOutHub, RedisFanOutHub]]:
    """Two hubs on one Redis, as replicas ``a`` and ``b`` (``b`` blocks 200 ms per read)."""
    async with (
        open_redis_hub(redis_server.url, prefix=prefix, replica_id="a") as a,
        open_redis_hub(redis_server.url, prefix=prefix, replica_id="b", block_ms=200) as b,
    ):
        yield a, b


def _tokens(n: int) -> list[str]:
    return [f"t{i} " for i in range(n)]


class _Busy(ScriptedSource):
    def __init__(self, agent_id: str, key: str, tokens: list[str], **kw: object) -> None:
        super().__init__(agent_id, tokens, **kw)  # type: ignore[arg-type]
        self.conversation_key = key


async def _read_all(hub: RedisFanOutHub, fanout_id: str, after: int = -1) -> list[Event]:
    entry = await hub.find(fanout_id)
    async with entry.watch(after) as sub:
        return [event async for event in sub]


async def test_a_fanout_started_on_one_replica_is_read_whole_on_another(
    hubs: tuple[RedisFanOutHub, RedisFanOutHub],
) -> None:
    a, b = hubs
    entry = await a.submit(
        [ScriptedSource("x", _tokens(40)), ScriptedSource("y", _tokens(30))], "hi"
    )
    async with entry.watch() as sub:
        on_a = [event async for event in sub]
    on_b = await _read_all(b, entry.fanout_id)
    assert [e.to_dict() for e in on_b] == [e.to_dict() for e in on_a]
    assert on_b[-1].type == "fanout_done"
    # Resuming on B from an index in the middle gives exactly the rest.
    middle = on_a[25].index
    rest = await _read_all(b, entry.fanout_id, after=middle)
    assert [e.index for e in rest] == list(range(middle + 1, on_a[-1].index + 1))
    listed = {row["fanout_id"]: row for row in await b.listing()}
    assert listed[entry.fanout_id]["state"] == "finished"
    assert listed[entry.fanout_id]["owner"] == "a"


async def test_a_reader_on_another_replica_follows_live(
    hubs: tuple[RedisFanOutHub, RedisFanOutHub],
) -> None:
    a, b = hubs
    entry = await a.submit([ScriptedSource("x", _tokens(20), delay_s=0.01)], "hi")
    mirror = await b.find(entry.fanout_id)
    assert mirror is not entry
    async with mirror.watch() as sub:
        texts = [e.delta async for e in sub if e.type == "content"]
    assert "".join(texts) == "".join(_tokens(20))
    assert (await b.find(entry.fanout_id)).summary()["agents"]["x"]["state"] == "done"


async def test_cancel_through_another_replica_reaches_the_owner(
    hubs: tuple[RedisFanOutHub, RedisFanOutHub],
) -> None:
    a, b = hubs
    slow = ScriptedSource("x", _tokens(10_000), delay_s=0.01)
    fast = ScriptedSource("y", _tokens(3))
    entry = await a.submit([slow, fast], "hi", on_disconnect="continue")
    mirror = await b.find(entry.fanout_id)
    assert mirror.cancel("x") is True
    events = await _read_all(b, entry.fanout_id)
    ends = {e.agent_id: e for e in events if e.is_terminal}
    assert ends["x"].type == "agent_cancelled"
    assert ends["x"].get("reason") == "user"
    assert ends["y"].type == "agent_done"
    assert slow.cancel_calls == 1


async def test_the_busy_rule_holds_across_replicas(
    hubs: tuple[RedisFanOutHub, RedisFanOutHub],
) -> None:
    a, b = hubs
    first = await a.submit([_Busy("x", "agent-1/conv-1", _tokens(10_000), delay_s=0.01)], "hi")
    with pytest.raises(ConversationBusyError) as caught:
        await b.submit([_Busy("col", "agent-1/conv-1", _tokens(3))], "hi")
    assert caught.value.agents == ["col"]
    assert "agent-1/conv-1" in str(caught.value)
    first.cancel()
    await first.wait()
    await wait_until(
        lambda: not a._owned,
        "the owner to release its locks",
    )
    second = await b.submit([_Busy("col", "agent-1/conv-1", _tokens(3))], "hi")
    await second.wait()


async def test_an_unknown_fanout_is_404_everywhere(redis_server: RedisProcess, prefix: str) -> None:
    async with open_redis_hub(redis_server.url, prefix=prefix) as hub:
        with pytest.raises(UnknownFanOutError):
            await hub.find("f-nope")


async def test_the_last_reader_anywhere_leaving_cancels(
    hubs: tuple[RedisFanOutHub, RedisFanOutHub], redis_server: RedisProcess, prefix: str
) -> None:
    a, b = hubs
    source = ScriptedSource("x", _tokens(10_000), delay_s=0.01)
    entry = await a.submit([source], "hi")  # on_disconnect: cancel
    mirror = await b.find(entry.fanout_id)
    async with entry.watch() as on_a, mirror.watch() as on_b:
        await on_a.__anext__()
        await on_b.__anext__()
        await wait_until(
            lambda: _readers(redis_server, prefix, entry.fanout_id) == 2,
            "both readers to be counted",
        )
    # Both left before the end: the fan-out is cancelled (reason disconnect).
    await entry.wait()
    last_agent_event = [e for e in entry.log.snapshot() if e.agent_id == "x"][-1]
    assert last_agent_event.type == "agent_cancelled"
    assert last_agent_event.get("reason") == "disconnect"


def _readers(server: RedisProcess, prefix: str, fanout_id: str) -> int:
    with server.client() as client:
        counts = client.hgetall(f"{prefix}fo:{{{fanout_id}}}:readers")
    return sum(int(v) for v in counts.values())


async def test_redis_down_refuses_new_fanouts_and_running_ones_go_on(
    tmp_path: Path, prefix: str
) -> None:
    server = RedisProcess(tmp_path, durable=True)
    server.start()
    try:
        async with open_redis_hub(server.url, prefix=prefix, lease_s=1.0) as hub:
            source = ScriptedSource("x", _tokens(300), delay_s=0.005)
            entry = await hub.submit([source], "hi")
            async with entry.watch() as sub:
                first = await sub.__anext__()
                server.stop()
                await wait_until(lambda: not hub.ok, "the hub to notice Redis is down")
                with pytest.raises(HubUnavailableError) as caught:
                    await hub.submit([ScriptedSource("y", _tokens(3))], "hi")
                assert "Redis" in str(caught.value)
                assert str(server.port) in str(caught.value)
                assert hub.health()["ok"] is False
                # The running fan-out streams on from memory, to the end.
                rest = [event async for event in sub]
            assert [first, *rest][-1].type == "fanout_done"
            text = "".join(e.delta for e in rest if e.type == "content")
            assert text == "".join(_tokens(300))
            server.start()
            await wait_until(lambda: hub.ok, "the hub to reconnect", timeout_s=20)
            # The whole log reaches Redis after all, and new fan-outs start again.
            await wait_until(
                lambda: _stored(server, prefix, entry.fanout_id) == entry.log.next_index,
                "the owner to catch Redis up",
            )
            again = await hub.submit([ScriptedSource("y", _tokens(3))], "hi")
            await again.wait()
    finally:
        server.stop()


def _stored(server: RedisProcess, prefix: str, fanout_id: str) -> int:
    with server.client() as client:
        return int(client.xlen(f"{prefix}fo:{{{fanout_id}}}:events"))


def test_the_redis_url_is_shown_without_its_password() -> None:
    assert redact_url("redis://user:secret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("redis://:secret@host/0") == "redis://:***@host/0"
    assert redact_url("redis://host:6379") == "redis://host:6379"


def _plant(server: RedisProcess, prefix: str, fanout_id: str, *, running: bool) -> None:
    """A fan-out in Redis whose second event is not JSON (written by something else)."""
    start = Event("fanout_start", fanout_id, None, None, 0, 0, 0.0, {"prompt": "hi"})
    with server.client() as client:
        client.hset(
            f"{prefix}fo:{{{fanout_id}}}",
            mapping={
                "state": "running" if running else "finished",
                "prompt": "hi",
                "agents": '{"x": "x"}',
                "options": "{}",
                "created_at": 1.0,
            },
        )
        client.xadd(f"{prefix}fo:{{{fanout_id}}}:events", {"e": start.to_json()}, id="0-1")
        client.xadd(f"{prefix}fo:{{{fanout_id}}}:events", {"e": "{not json"}, id="1-1")
        if running:
            client.sadd(f"{prefix}running", fanout_id)


async def test_an_event_in_redis_that_is_not_one_ends_the_copy_with_a_reason(
    redis_server: RedisProcess, prefix: str
) -> None:
    _plant(redis_server, prefix, "f-planted", running=False)
    async with open_redis_hub(redis_server.url, prefix=prefix) as hub:
        mirror = await hub.find("f-planted")
        async with mirror.watch() as sub:
            events = [event async for event in sub]
        assert [e.type for e in events] == ["fanout_start"]
        assert mirror.error is not None
        assert "1-1" in mirror.error
        assert "not a valid event" in mirror.error
        assert mirror.summary()["agents"]["x"]["state"] == "pending"


async def test_a_fanout_that_cannot_be_taken_over_is_marked_failed(
    redis_server: RedisProcess, prefix: str
) -> None:
    _plant(redis_server, prefix, "f-corrupt", running=True)  # running, and nobody's lease
    async with open_redis_hub(redis_server.url, prefix=prefix, lease_s=0.4) as hub:

        def given_up() -> bool:
            with redis_server.client() as client:
                record = client.hgetall(f"{prefix}fo:{{f-corrupt}}")
                return bool(record.get(b"state") == b"finished")

        await wait_until(given_up, "the scanner to give the fan-out up")
        with redis_server.client() as client:
            record = client.hgetall(f"{prefix}fo:{{f-corrupt}}")
            assert not client.sismember(f"{prefix}running", "f-corrupt")
        assert b"takeover failed" in record[b"error"]
        assert b"not a valid event" in record[b"error"]
        assert hub.health()["ok"] is True  # the hub itself carries on


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"lease_s": 0}, "lease_s must be > 0, got 0"),
        ({"block_ms": 0}, "block_ms must be > 0, got 0"),
        ({"max_connections": 3}, "max_connections must be >= 4, got 3"),
        ({"disconnect_grace_s": -1}, "disconnect_grace_s must be >= 0, got -1"),
    ],
)
async def test_a_bad_setting_is_refused_before_connecting(
    setting: dict[str, float], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        async with open_redis_hub("redis://127.0.0.1:1/0", **setting):  # type: ignore[arg-type]
            pass
