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


def start_replica(
    name: str, redis: RedisProcess, tmp_path: Path, *extra: str, delay_s: float = 0.01
) -> SpawnedServer:
    """``orchestrator serve`` of the scripted agents with the Redis hub, as replica ``name``."""
    return spawn_server(
        [
            ORCHESTRATOR,
            "serve",
            "--scripted",
            "tests.replicas._agents:directory",
            "--redis",
            redis.url,
            "--replica-id",
            name,
            "--lease-s",
            str(LEASE_S),
            "--token-secret",
            "a shared secret of the replicas",
            # Votes and sessions: one database for both replicas (SQLite is enough here).
            "--database-url",
            f"sqlite:///{tmp_path / 'shared.db'}",
            "--log-level",
            "warning",
            *extra,
        ],
        env={"REPLICA_DELAY_S": str(delay_s)},
        log=tmp_path / f"replica-{name}.log",
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
    """``orchestrator serve`` of a real Letta server, with the Redis hub, as ``name``.

    With ``--redis`` the Letta requests run in background mode (the default), so a replica
    that takes a fan-out over resumes its Letta runs.
    """
    return spawn_server(
        [
            ORCHESTRATOR,
            "serve",
            "--letta-base-url",
            letta_url,
            "--redis",
            redis.url,
            "--replica-id",
            name,
            "--lease-s",
            str(LEASE_S),
            "--database-url",
            database_url,
            "--log-level",
            "warning",
        ],
        log=tmp_path / f"letta-replica-{name}.log",
    )
