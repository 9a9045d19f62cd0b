"""uvicorn's HTTP protocol with a bounded close and a request-head timeout, so a client
that stops reading, or sends its headers a byte at a time, cannot keep a connection (its
file descriptor and its unsent data) for as long as it likes.

When a response cannot be completed (the SSE send timeout dropped a client that stopped
reading), uvicorn closes the transport. An asyncio transport closes only once its write
buffer has drained, and it never drains while the client keeps its socket open without
reading: the descriptor and the buffered data stay until the client goes away. Here
``close()`` gives the buffer :data:`CLOSE_GRACE_S` seconds to drain and then aborts the
connection (a TCP reset), which frees both at once.

``orchestrator serve`` passes :func:`create_http_protocol` to uvicorn (``Config(http=...)``).
The WebSocket protocol uvicorn switches to on an upgrade gets the same transport.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["CLOSE_GRACE_S", "HEADER_TIMEOUT_S", "BoundedCloseTransport", "create_http_protocol"]

#: Seconds a closing connection may take to send what it still has buffered.
CLOSE_GRACE_S = 5.0

#: Seconds a connection may take to send a complete request head.
HEADER_TIMEOUT_S = 10.0


class BoundedCloseTransport:
    """Wraps a transport: ``close()`` turns into ``abort()`` if the data is not taken in time."""

    def __init__(self, transport: asyncio.Transport, grace_s: float = CLOSE_GRACE_S) -> None:
        self._transport = transport
        self._grace_s = grace_s
        self._timer: asyncio.TimerHandle | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        """Close; abort after the grace period if the peer has not taken the buffered data."""
        transport = self._transport
        pending = transport.get_write_buffer_size()
        transport.close()
        if pending and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._grace_s, self._abort_if_open)

    def _abort_if_open(self) -> None:
        with contextlib.suppress(Exception):  # already gone: nothing to free
            if self._transport.get_write_buffer_size():
                self._transport.abort()


def create_http_protocol(
    grace_s: float = CLOSE_GRACE_S, header_timeout_s: float = HEADER_TIMEOUT_S
) -> type[asyncio.Protocol]:
    """uvicorn's default HTTP protocol class (httptools, else h11), hardened.

    Its close is bounded (:class:`BoundedCloseTransport`), and a connection that has not
    sent a complete request head within ``header_timeout_s`` of opening, or of its last
    response, is closed: uvicorn has no such timeout, so a client sending a header byte
    every few seconds would otherwise hold the connection for as long as it likes.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol

    class BoundedCloseProtocol(base):  # type: ignore[misc]
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(BoundedCloseTransport(transport, grace_s))
            self._arm_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

        def _arm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timed_out)

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                return  # closed, or upgraded to a WebSocket
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                return  # a request is being served; its end re-arms the timer
            self.logger.info("closing a connection that sent no complete request head in time")
            self.transport.close()

    return BoundedCloseProtocol
