"""Issue 12, finding 8: a client that stops reading cannot keep a connection open.

Against a real ``orchestrator serve`` process: several SSE clients post a long fan-out,
read the first bytes, then never read again but keep their sockets open. The send
timeout drops each of them; the server must then also close the connections (their file
descriptors), although the clients still hold their ends, and its memory must go back
down instead of keeping what it had buffered for each of them.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from orchestrator import AgentRef, ScriptedDirectory, ScriptedSource, Source
from tests._servers import SpawnedServer, spawn_server
from tests._wait import wait_until_sync

pytestmark = pytest.mark.slow

AGENTS = ("long-1", "long-2", "long-3")
TOKENS = 200_000  # ~50 MB of SSE per agent: far more than any buffer holds
CLIENTS = 4
BATCHES = 4
TINY = 4096


def _long(agent_id: str, label: str) -> ScriptedSource:
    return ScriptedSource(agent_id, ["lorem ipsum dolor "] * TOKENS, label=label)


class _Forgetful(ScriptedDirectory):
    """Keeps no list of the sources it made, so the server's memory is the server's own."""

    async def sources(self, refs: Sequence[AgentRef]) -> list[Source]:
        made = await super().sources(refs)
        self.created.clear()
        return made


def directory() -> ScriptedDirectory:
    """The server's agents (``--scripted tests.faults.test_security_slow_clients:directory``)."""
    return _Forgetful(dict.fromkeys(AGENTS, _long))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SpawnedServer]:
    argv = [
        str(Path(sys.executable).parent / "orchestrator"),
        "serve",
        "--scripted",
        "tests.faults.test_security_slow_clients:directory",
        "--send-timeout-s",
        "1",
        "--ping-s",
        "600",
        "--retention-s",
        "0.5",
        "--log-level",
        "warning",
    ]
    running = spawn_server(argv, log=tmp_path / "server.log")
    yield running
    running.stop()


def _stalled_client(port: int) -> socket.socket:
    """POST a streaming fan-out, read the first bytes of the answer, then stop reading."""
    body = json.dumps({"agents": [{"agent_id": a} for a in AGENTS], "message": "go"}).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TINY)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    head = (
        f"POST /v1/fanouts HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    first = sock.recv(64)
    assert first.startswith(b"HTTP/1.1 200"), first
    return sock


def _connections(pid: int, port: int) -> int:
    """The server's established TCP connections on its port."""
    return sum(
        1
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
    )


def _running(server: SpawnedServer) -> list[Any]:
    # Fan-outs are forgotten 0.5 s after they end (--retention-s), so a finished one's log
    # (the resume window, bounded separately) is no part of what is measured here.
    listing = httpx.get(server.url + "/v1/fanouts", timeout=10).json()["fanouts"]
    return [f for f in listing if f["state"] == "running"]


def _rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def _drop_a_batch(server: SpawnedServer, baseline: int) -> None:
    """CLIENTS stalled readers at once; returns when the server closed every connection."""
    pid = server.process.pid
    port = int(server.url.rsplit(":", 1)[1])
    with ExitStack() as clients:
        for _ in range(CLIENTS):
            clients.enter_context(_stalled_client(port))
        wait_until_sync(lambda: bool(_running(server)), "the fan-outs to start")
        # The send timeout ends each response and cancels its fan-out (on_disconnect).
        wait_until_sync(lambda: not _running(server), "the send timeout to drop every client")
        # The clients still hold their sockets open and read nothing: only the server
        # ending the connections brings its count back.
        wait_until_sync(
            lambda: _connections(pid, port) == baseline,
            f"the server's connections back to {baseline} while the clients hold theirs",
            timeout_s=30,
        )


def test_stalled_readers_are_dropped_and_their_connections_closed(
    server: SpawnedServer,
) -> None:
    pid = server.process.pid
    baseline = _connections(pid, int(server.url.rsplit(":", 1)[1]))
    rss = [_rss_mb(pid)]
    for _ in range(BATCHES):
        _drop_a_batch(server, baseline)
        rss.append(_rss_mb(pid))
    print("\nserver RSS (MB) at start and after each batch:", [round(r) for r in rss])
    # The first batch raises the allocator's high-water mark (each fan-out's log fills to
    # max_log_events while its reader stalls); later batches reuse that memory. Keeping
    # ~9 MB per dropped client would add ~9 * CLIENTS * (BATCHES - 1) MB after the first.
    kept = (rss[-1] - rss[1]) / (CLIENTS * (BATCHES - 1))
    assert kept < 5, f"the server kept {kept:.1f} MB per dropped client: {rss}"
