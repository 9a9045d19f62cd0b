"""The Letta protocol simulator served over real HTTP (uvicorn in a thread) for tests.

Use the fixtures by importing them into a test module or a conftest::

    from tests.testing._sim_fixtures import simulator, sim_server  # noqa: F401

``run_simulator(sim)`` is the context manager behind them, for tests that need their own
agents or settings.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import uvicorn
from letta_client import AsyncLetta

from orchestrator.testing._simulator import Simulator

__all__ = ["SimServer", "run_simulator", "sim_client", "sim_server", "simulator"]

_START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SimServer:
    """A running simulator: its state and its base URL."""

    sim: Simulator
    base_url: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def run_simulator(sim: Simulator) -> Iterator[SimServer]:
    """Serve ``sim`` with uvicorn (httptools) on a free loopback port until the block ends."""
    port = _free_port()
    config = uvicorn.Config(
        sim.app,
        host="127.0.0.1",
        port=port,
        http="httptools",
        ws="none",
        lifespan="off",
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"simulator-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT_S
    # Polling a real condition (the server says it started), not sleeping to synchronise.
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"simulator did not start on port {port}")
        time.sleep(0.005)
    try:
        yield SimServer(sim, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=_START_TIMEOUT_S)


@pytest.fixture
def simulator() -> Simulator:
    """A fresh simulator with four agents (``sim-0`` ... ``sim-3``)."""
    return Simulator(4)


@pytest.fixture
def sim_server(simulator: Simulator) -> Iterator[SimServer]:
    """``simulator`` served over HTTP for the duration of the test."""
    with run_simulator(simulator) as server:
        yield server


@pytest.fixture
async def sim_client(sim_server: SimServer) -> AsyncIterator[AsyncLetta]:
    """An ``AsyncLetta`` pointed at the simulator (no SDK retries), closed after the test."""
    client = AsyncLetta(base_url=sim_server.base_url, max_retries=0)
    try:
        yield client
    finally:
        await client.close()
