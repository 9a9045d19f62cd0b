"""A real redis-server of the tests' own: a free port, a temporary folder, stoppable.

Redis Streams tests need a real server (fakeredis' ``XREAD BLOCK`` does not block), and the
failure tests stop and restart it, so they never use a shared one. The binary comes from
Debian's ``redis-server`` package, which ``make test`` installs (scripts/install-redis.sh).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import redis

from tests._wait import wait_until_sync


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisProcess:
    """``redis-server`` on 127.0.0.1 at a port of its own; :meth:`stop` and :meth:`start`."""

    def __init__(self, folder: Path, *, durable: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: run `bash scripts/install-redis.sh` "
                "(make test does)"
            )
        self.binary = binary
        self.folder = folder
        # Durable: every write is on disk before Redis answers, so a kill loses nothing
        # (what a production Redis with AOF approximates).
        self.durable = durable
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server (same port and folder) and wait until it answers."""
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--save",
                "",
                *(
                    ("--appendonly", "yes", "--appendfsync", "always")
                    if self.durable
                    else ("--appendonly", "no")
                ),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            wait_until_sync(lambda: _answers(client), "redis-server to answer", timeout_s=10)
        finally:
            client.close()

    def stop(self) -> None:
        """Kill the server (SIGKILL: its clients see the connection drop)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
