"""The stack's Redis: its own redis-server for the Letta server, or one given by URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli._app import app
from orchestrator.stack._redis import (
    RedisTarget,
    parse_redis_url,
    redis_ping,
)
from orchestrator.stack._stack import (
    DEFAULT_REDIS_PORT,
    StackConfig,
    StackError,
    StackInfo,
    _letta_env,
    _redis_status,
    _up_redis,
    stack_status,
)


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


def test_letta_is_given_the_redis_of_the_url(tmp_path: Path) -> None:
    # The Letta server reads LETTA_REDIS_HOST/PORT; a given URL replaces the stack's own.
    # (Not run end to end here: restarting the shared Letta server on another Redis would
    # break every other session using the stack; checked by hand, see docs/letta-stack.md.)
    config = StackConfig(home=tmp_path, redis_url="redis://10.1.2.3:7000")
    env = _letta_env(config, "postgresql://u:p@127.0.0.1:1/letta", "http://m/v1", config.redis)
    assert (env["LETTA_REDIS_HOST"], env["LETTA_REDIS_PORT"]) == ("10.1.2.3", "7000")
    own = StackConfig(home=tmp_path, redis_port=56390)
    env = _letta_env(own, "postgresql://u:p@127.0.0.1:1/letta", "http://m/v1", own.redis)
    assert (env["LETTA_REDIS_HOST"], env["LETTA_REDIS_PORT"]) == ("127.0.0.1", "56390")
