"""Two real ``orchestrator serve`` replicas, A and B, sharing a real redis-server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests._redis import RedisProcess
from tests._servers import SpawnedServer, spawn_server
from tests.letta.conftest import letta_client as letta_client
from tests.letta.conftest import letta_stack as letta_stack
from tests.letta.conftest import pytest_collection_finish as pytest_collection_finish
from tests.letta.conftest import scripted_agent as scripted_agent

ORCHESTRATOR = str(Path(sys.executable).parent / "orchestrator")
LEASE_S = 1.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path / "redis", durable=True)
    server.folder.mkdir()
    server.start()
    yield server
    server.stop()


def _spawn_replica(
    name: str,
    redis: RedisProcess,
    agents: list[str],
    database_url: str,
    log: Path,
    env: dict[str, str] | None = None,
) -> SpawnedServer:
    """``orchestrator serve`` with the Redis hub as replica ``name``, serving ``agents``
    (``--scripted ...`` or ``--letta-base-url ...``)."""
    return spawn_server(
        [
            ORCHESTRATOR,
            "serve",
            *agents,
            "--redis",
            redis.url,
            "--replica-id",
            name,
            "--lease-s",
            str(LEASE_S),
            "--token-secret",
            "a shared secret of the replicas",
            "--database-url",
            database_url,
            "--log-level",
            "warning",
        ],
        env=env,
        log=log,
    )


def start_replica(
    name: str, redis: RedisProcess, tmp_path: Path, *, delay_s: float = 0.01
) -> SpawnedServer:
    """A replica of the scripted agents; votes and sessions in one SQLite file for both."""
    return _spawn_replica(
        name,
        redis,
        ["--scripted", "tests.replicas._agents:directory"],
        f"sqlite:///{tmp_path / 'shared.db'}",
        tmp_path / f"replica-{name}.log",
        env={"REPLICA_DELAY_S": str(delay_s)},
    )


@pytest.fixture
def replicas(
    redis_server: RedisProcess, tmp_path: Path
) -> Iterator[tuple[SpawnedServer, SpawnedServer]]:
    a = start_replica("A", redis_server, tmp_path)
    b = start_replica("B", redis_server, tmp_path)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def health(server: SpawnedServer) -> dict[str, object]:
    body: dict[str, object] = httpx.get(server.url + "/healthz", timeout=5).json()
    return body


def start_letta_replica(
    name: str, redis: RedisProcess, letta_url: str, database_url: str, tmp_path: Path
) -> SpawnedServer:
    """A replica of a real Letta server. With ``--redis`` the Letta requests run in background
    mode (the default), so a replica that takes a fan-out over resumes its Letta runs."""
    return _spawn_replica(
        name,
        redis,
        ["--letta-base-url", letta_url],
        database_url,
        tmp_path / f"letta-replica-{name}.log",
    )
