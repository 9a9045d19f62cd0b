"""The stack's Redis: its own redis-server for the Letta server, or one given by URL."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from letta_client import AsyncLetta
from typer.testing import CliRunner

from orchestrator import LettaSource
from orchestrator.cli._app import app
from orchestrator.stack._redis import (
    RedisTarget,
    parse_redis_url,
    redis_ping,
    redis_server_args,
    redis_server_bin,
)
from orchestrator.stack._stack import (
    DEFAULT_REDIS_PORT,
    StackConfig,
    StackError,
    StackInfo,
    _redis_status,
    _up_redis,
    stack_status,
    stack_up,
)
from tests._wait import wait_until_sync
from tests.letta.conftest import CreateAgent


def test_redis_urls() -> None:
    assert parse_redis_url("redis://127.0.0.1:56379") == RedisTarget("127.0.0.1", 56379)
    assert parse_redis_url("redis://cache.internal") == RedisTarget("cache.internal", 6379)
    assert parse_redis_url("redis://h:7000/0").url == "redis://h:7000"
    for bad in ("http://h:1", "redis://", "redis://:secret@h:1", "redis://h:1/3", "redis://h:x"):
        with pytest.raises(StackError):
            parse_redis_url(bad)


def test_the_default_port_is_not_the_system_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LETTA_FANOUT_REDIS_PORT", raising=False)
    monkeypatch.delenv("LETTA_FANOUT_REDIS_URL", raising=False)
    config = StackConfig()
    assert config.redis_port == DEFAULT_REDIS_PORT != 6379
    assert config.redis == RedisTarget("127.0.0.1", DEFAULT_REDIS_PORT)
    monkeypatch.setenv("LETTA_FANOUT_REDIS_URL", "redis://127.0.0.1:7001")
    assert StackConfig().redis == RedisTarget("127.0.0.1", 7001)


def test_a_given_redis_that_does_not_answer_stops_up(tmp_path: Path) -> None:
    # Port 9 (discard) on loopback: nothing listens there.
    config = StackConfig(home=tmp_path, redis_url="redis://127.0.0.1:9")
    with pytest.raises(StackError, match="does not answer PING"):
        _up_redis(config, {}, lambda _msg: None)


@pytest.mark.letta
def test_the_stack_runs_letta_with_its_own_redis(letta_stack: StackInfo) -> None:
    rows = {row.name: row for row in stack_status()}
    redis = rows["redis"]
    assert redis.running
    assert redis.healthy
    assert redis.address == letta_stack.redis_url
    assert redis.pid == letta_stack.redis_pid
    assert redis_ping(parse_redis_url(letta_stack.redis_url))
    # The status command prints the row too.
    result = CliRunner().invoke(app, ["stack", "status", "--json"])
    assert result.exit_code == 0, result.output
    by_name = {row["name"]: row for row in json.loads(result.output)}
    assert by_name["redis"]["healthy"] is True


@pytest.mark.letta
def test_a_redis_url_is_used_as_given_and_never_started_or_stopped(
    letta_stack: StackInfo, tmp_path: Path
) -> None:
    # Another stack home that points at an existing Redis (here: the stack's own one).
    config = StackConfig(home=tmp_path, redis_url=letta_stack.redis_url)
    target, pid, ticks = _up_redis(config, {}, lambda _msg: None)
    assert target.url == letta_stack.redis_url
    assert (pid, ticks) == (None, None)
    state = {"redis": {"pid": None, "url": target.url, "port": target.port, "external": True}}
    row = _redis_status(config, state, {})
    assert (row.running, row.healthy, row.pid) == (True, True, None)
    assert row.address == letta_stack.redis_url


def test_stack_up_takes_redis_options() -> None:
    result = CliRunner().invoke(app, ["stack", "up", "--help"])
    assert result.exit_code == 0
    assert "--redis-url" in result.output
    assert "--redis-port" in result.output


def _exists(target: RedisTarget, key: str) -> bool:
    with socket.create_connection((target.host, target.port), timeout=2) as sock:
        sock.sendall(f"EXISTS {key}\r\n".encode())
        return sock.recv(64).startswith(b":1")


@pytest.fixture
def other_redis(tmp_path: Path) -> Iterator[RedisTarget]:
    """A redis-server of the test's own on a free port (a Redis the stack did not start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    log = tmp_path / "redis.log"
    args = redis_server_args(redis_server_bin(log), port, tmp_path)
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    target = RedisTarget("127.0.0.1", port)
    try:
        wait_until_sync(lambda: redis_ping(target), "the test's redis-server", timeout_s=15)
        yield target
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.letta
@pytest.mark.slow
@pytest.mark.timeout(300)  # two restarts of the Letta server
async def test_stack_up_with_a_redis_url_gives_letta_that_redis(
    letta_stack: StackInfo, other_redis: RedisTarget, scripted_agent: CreateAgent
) -> None:
    try:
        info = await anyio.to_thread.run_sync(
            lambda: stack_up(StackConfig(redis_url=other_redis.url))
        )
        assert (info.redis_url, info.redis_pid) == (other_redis.url, None)
        rows = {row.name: row for row in stack_status()}
        assert (rows["redis"].healthy, rows["redis"].pid) == (True, None)
        assert rows["redis"].address == other_redis.url
        # The stack's own redis-server is not needed any more: it was stopped.
        assert not redis_ping(parse_redis_url(letta_stack.redis_url))
        agent_id = await scripted_agent("Ines sorts the mail.")
        async with AsyncLetta(base_url=info.base_url) as client:
            source = LettaSource(client, agent_id, background=True)
            events = [sev async for sev in source.stream("Hello [[words=5]]")]
        assert events[-1].type == "agent_done", events[-1]
        assert _exists(other_redis, f"sse:run:{source.run_id}")
    finally:
        restored = await anyio.to_thread.run_sync(stack_up)
    assert restored.redis_url == letta_stack.redis_url
    assert restored.redis_pid is not None
