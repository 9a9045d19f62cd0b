"""Real uvicorn servers for tests, each on a socket that is already bound and listening.

Binding port 0, closing the socket and handing the number to a server races with every other
process that binds a port meanwhile. Here the test binds the socket and the server serves it:
in this process (:func:`serve_app`) or in a child that inherits it (:func:`spawn_server`,
``--fd``).
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn

from tests._wait import wait_until, wait_until_sync

ROOT = Path(__file__).resolve().parent.parent


def bind_loopback(*, sndbuf: int | None = None) -> socket.socket:
    """A TCP socket bound to an ephemeral loopback port and listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sndbuf is not None:
        # Accepted connections inherit the listener's send buffer.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    return sock


def url_of(sock: socket.socket) -> str:
    """The base URL a bound socket serves."""
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


@asynccontextmanager
async def serve_app(app: Any, **config: Any) -> AsyncIterator[str]:
    """Run ``app`` (lifespan included) in this event loop until the block ends; yields its URL."""
    sock = bind_loopback()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=5,
            **config,
        )
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            await wait_until(lambda: server.started, "uvicorn to start")
            try:
                yield url_of(sock)
            finally:
                server.should_exit = True
    finally:
        sock.close()


@dataclass
class SpawnedServer:
    """A server in a child process; ``url`` is its base URL."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path | None

    def output(self) -> str:
        """What the server wrote so far (its log file), for failure messages."""
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def stop(self, timeout_s: float = 15.0) -> None:
        """Terminate it and wait; kill it if it does not stop in time."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _healthy(server: SpawnedServer) -> bool:
    if server.process.poll() is not None:
        raise RuntimeError(f"server exited with {server.process.returncode}: {server.output()}")
    try:
        return httpx.get(server.url + "/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def spawn_server(
    argv: Sequence[str],
    *,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    timeout_s: float = 60.0,
) -> SpawnedServer:
    """Start ``argv + ['--fd', N]`` (uvicorn, or ``orchestrator serve``) on a bound socket.

    Waits until ``/healthz`` answers 200. The child inherits the listening socket, so no
    other process can take the port between the choice and the start.
    """
    sock = bind_loopback()
    fd, url = sock.fileno(), url_of(sock)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out: Any = log.open("wb")
    else:
        out = None
    try:
        process = subprocess.Popen(
            [*argv, "--fd", str(fd)],
            cwd=cwd,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            pass_fds=(fd,),
        )
    finally:
        if out is not None:
            out.close()
        sock.close()  # the child holds its own copy
    server = SpawnedServer(url, process, log)
    try:
        wait_until_sync(lambda: _healthy(server), f"{argv[0]} to answer", timeout_s=timeout_s)
    except BaseException:
        server.stop()
        raise
    return server
