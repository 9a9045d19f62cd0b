"""Redis for the local Letta stack: Debian's ``redis-server``, or one the user points at.

Letta 0.16.8 needs Redis for background streams (``background=True``), for resuming a run's
stream (``POST /v1/runs/{run_id}/stream``), for its per-conversation lock and for
deduplicating a retried request that carries the same message ``otid``. The stack runs a
``redis-server`` of its own on a loopback port (``$LETTA_FANOUT_REDIS_PORT``, default
56379, away from the usual 6379) with its data folder under the stack's home, or uses the
server of ``--redis-url`` / ``$LETTA_FANOUT_REDIS_URL`` and starts none.

Nothing here needs a Redis client library: health is one ``PING`` over a socket.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ._errors import StackError

__all__ = ["RedisTarget", "parse_redis_url", "redis_ping", "redis_server_args", "redis_server_bin"]

#: Where ``scripts/install-redis.sh`` (Debian's ``redis-server`` package) puts the server.
_KNOWN_PATHS = ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")


@dataclass(frozen=True)
class RedisTarget:
    """A Redis server the Letta server can use: ``LETTA_REDIS_HOST`` and ``LETTA_REDIS_PORT``."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"


def parse_redis_url(url: str) -> RedisTarget:
    """The host and port of a ``redis://host:port`` URL (raises :class:`StackError`).

    Letta 0.16.8 reads only a host and a port (no password, no database number, no TLS), so
    a URL that needs more is refused rather than silently half-used.
    """
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise StackError("redis: --redis-url", f"{url!r} is not a redis://host:port URL")
    if parts.username or parts.password or parts.path not in ("", "/", "/0"):
        raise StackError(
            "redis: --redis-url",
            f"{url!r}: the Letta server (0.16.8) takes only a host and a port from Redis "
            "settings (no password, no database other than 0)",
            fix="use a Redis server that needs neither",
        )
    try:
        port = parts.port or 6379
    except ValueError as exc:
        raise StackError("redis: --redis-url", f"{url!r}: {exc}") from exc
    return RedisTarget(parts.hostname, port)


def redis_ping(target: RedisTarget, timeout: float = 1.0) -> bool:
    """True when the server answers ``PING`` with ``PONG``."""
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_server_bin(log: Path) -> str:
    """The ``redis-server`` executable (raises :class:`StackError` naming the fix)."""
    found = shutil.which("redis-server")
    if found:
        return found
    for path in _KNOWN_PATHS:
        if Path(path).exists():
            return path
    raise StackError(
        "redis: start",
        "redis-server is not installed",
        log=log,
        fix="run `bash scripts/install-redis.sh` (apt-get install redis-server), "
        "or give an existing server with --redis-url redis://HOST:PORT",
    )


def redis_server_args(binary: str, port: int, data_dir: Path) -> list[str]:
    """The command line of the stack's own server: loopback only, no snapshots.

    Letta keeps a run's chunks for three hours; a stack restart may lose them, so nothing
    is written to disk (``save ""``, no append-only file) and the folder only holds what
    Redis itself might drop there.
    """
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
        "--logfile",
        "",
    ]
