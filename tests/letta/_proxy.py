"""A TCP proxy in front of the Letta server that breaks connections on purpose.

Every connection is forwarded byte for byte and recorded (what the client sent). The proxy
breaks the first connection whose request matches ``match``, in one of two ways:

- ``cut_after=N``: once the response holds N ``"assistant_message"`` frames, forward it only
  up to the middle of the Nth frame, then close both sides (a network cut mid-answer);
- ``drop_response=True``: forward the request, wait until the server starts answering, then
  close both sides before the client got a byte (the request reached the server, the client
  cannot know it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import SocketAttribute, SocketStream

__all__ = ["Connection", "CutProxy", "open_cut_proxy"]

_TOKEN = b'"assistant_message"'


@dataclass
class Connection:
    """One client connection through the proxy: the bytes it sent, the bytes it got."""

    request: bytearray = field(default_factory=bytearray)
    forwarded: int = 0
    broken: bool = False


@dataclass
class CutProxy:
    """The running proxy: its URL, what went through it and whether it broke a connection."""

    base_url: str
    match: bytes
    cut_after: int | None
    drop_response: bool
    connections: list[Connection] = field(default_factory=list)
    armed: bool = True

    @property
    def broken(self) -> list[Connection]:
        return [c for c in self.connections if c.broken]

    def requests_matching(self) -> list[bytes]:
        return [bytes(c.request) for c in self.connections if self.match in c.request]


async def _pump_up(client: SocketStream, upstream: SocketStream, conn: Connection) -> None:
    async for data in client:
        conn.request += data
        await upstream.send(data)


async def _handle(proxy: CutProxy, target_port: int, client: SocketStream) -> None:
    conn = Connection()
    proxy.connections.append(conn)
    upstream = await anyio.connect_tcp("127.0.0.1", target_port)
    async with client, upstream, anyio.create_task_group() as tg:
        tg.start_soon(_pump_up, client, upstream, conn)
        seen = bytearray()
        async for data in upstream:
            victim = proxy.armed and proxy.match in conn.request
            if victim and proxy.drop_response:
                proxy.armed = False
                conn.broken = True
                break
            if victim and proxy.cut_after is not None:
                seen += data
                if seen.count(_TOKEN) >= proxy.cut_after:
                    proxy.armed = False
                    conn.broken = True
                    # Up to the middle of the Nth frame: the client holds half a frame.
                    at = _nth(bytes(seen), _TOKEN, proxy.cut_after) + len(_TOKEN) // 2
                    keep = at - (len(seen) - len(data))
                    if keep > 0:
                        await client.send(data[:keep])
                        conn.forwarded += keep
                    break
            await client.send(data)
            conn.forwarded += len(data)
        tg.cancel_scope.cancel()


def _nth(haystack: bytes, needle: bytes, n: int) -> int:
    at = -1
    for _ in range(n):
        at = haystack.index(needle, at + 1)
    return at


@asynccontextmanager
async def open_cut_proxy(
    target_port: int,
    *,
    match: bytes = b"/messages",
    cut_after: int | None = None,
    drop_response: bool = False,
) -> AsyncIterator[CutProxy]:
    """Serve the proxy on a free loopback port for the block; yields its state."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)
    proxy = CutProxy(f"http://127.0.0.1:{port}", match, cut_after, drop_response)

    async def handle(client: SocketStream) -> None:
        await _handle(proxy, target_port, client)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()
