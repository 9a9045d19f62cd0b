"""How a reader's events go on the wire: batched SSE frames, delivery windows, gzip.

Every SSE or WebSocket reader takes its events from the fan-out's log in **batches**: what is
ready when it looks, in one ASGI send (SSE), so a reader that fell behind catches up in few
writes instead of one write, one send timeout and one wake-up per event. Each event keeps
its own ``id:``; the bytes are what sse-starlette would write for it event by event.

With a **delivery window** (``coalesce_ms``, opt-in), a batch is what arrived within the
window after its first event, and consecutive text deltas of one agent and message in it
(``content`` or ``reasoning``, no other event of that agent between them) merge into one
event: the envelope of the last delta (so ``index`` is the last index it covers) with the
joined ``delta``. The events of a batch go out in the order of their indexes. An event's
SSE ``id:`` is its index only when every index up to it has been sent by then; otherwise the
event has no ``id:`` line and a browser keeps the previous one. The last event of a batch
always has one (a batch is a contiguous range), so ``Last-Event-ID`` is always an index up
to which the client has every event, and a resume from it replays exactly the events after
it: nothing is lost, and nothing the client holds comes twice unless the connection broke
inside one batch's write.

**gzip** (``Accept-Encoding: gzip``): :class:`GzipSend` compresses every body message of
the response, pings included, with one compressor and a sync flush after each, so every
event reaches the client as soon as it is sent (no buffering in the compressor).
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import anyio
import orjson
from starlette.types import Message, Send

from orchestrator import Event, LogSubscription

from ._json import event_json

__all__ = [
    "GzipSend",
    "accepts_gzip",
    "coalesce",
    "encode_sse",
    "event_batches",
]

#: The line separator sse-starlette writes (``ServerSentEvent.DEFAULT_SEPARATOR``).
_SEP = b"\r\n"
_TEXT = frozenset({"content", "reasoning"})
#: Most events one batch takes from the log (a reader far behind catches up in several).
BATCH_LIMIT = 256
#: Most events one delivery window takes (a resume of a long log: several windows).
WINDOW_LIMIT = 4096


def encode_sse(event: Event, *, with_id: bool = True) -> bytes:
    """One event as an SSE frame, byte for byte as sse-starlette writes it."""
    try:
        data = orjson.dumps(event.to_dict())
    except TypeError:  # text that is not Unicode: the repaired JSON the API always sends
        data = event_json(event).encode()
    head = b"id: %d\r\n" % event.index if with_id else b""
    return b"%sevent: %s\r\ndata: %s\r\n\r\n" % (head, event.type.encode(), data)


def encode_batch(batch: Iterable[tuple[Event, bool]]) -> bytes:
    """The SSE frames of one batch, as one chunk."""
    return b"".join([encode_sse(event, with_id=with_id) for event, with_id in batch])


def coalesce(events: list[Event]) -> list[tuple[Event, bool]]:
    """Merge one window's consecutive text deltas per agent and message (see the module).

    ``events`` is a contiguous run of the log in index order. Returns ``(event, with_id)``
    in index order of the events sent, ``with_id`` telling whether its index may be sent as
    the SSE ``id:`` (every index up to it is covered by then).
    """
    if not events:
        return []
    # Per agent: its open run of text deltas. Items: the runs and single events to send.
    runs: dict[str | None, list[Event]] = {}
    items: list[list[Event]] = []

    def close(agent: str | None) -> None:
        run = runs.pop(agent, None)
        if run is not None:
            items.append(run)

    for event in events:
        agent = event.agent_id
        run = runs.get(agent)
        if event.type in _TEXT and agent is not None:
            if (
                run is not None
                and run[-1].type == event.type
                and run[-1].message_id == event.message_id
            ):
                run.append(event)
                continue
            close(agent)
            runs[agent] = [event]
            continue
        close(agent)
        items.append([event])
    for agent in list(runs):
        close(agent)
    items.sort(key=lambda run: run[-1].index)
    out: list[tuple[Event, bool]] = []
    covered: set[int] = set()
    needed = events[0].index  # the lowest index not sent yet
    for run in items:
        covered.update(event.index for event in run)
        while needed in covered:
            covered.discard(needed)
            needed += 1
        last = run[-1]
        merged = last if len(run) == 1 else _merge(run)
        out.append((merged, needed > last.index))
    return out


def _merge(run: list[Event]) -> Event:
    last = run[-1]
    data: dict[str, Any] = dict(last.data)
    data["delta"] = "".join(event.delta for event in run)
    return Event(
        last.type, last.fanout_id, last.agent_id, last.label, last.seq, last.index, last.t, data
    )


async def event_batches(
    sub: LogSubscription, coalesce_s: float = 0.0
) -> AsyncIterator[list[tuple[Event, bool]]]:
    """A reader's batches: every event of ``sub``, as ``(event, with_id)`` lists.

    Without a window a batch is the events ready when the reader looks (every one with its
    id). With ``coalesce_s`` > 0 a batch is what arrived within that many seconds after its
    first event, coalesced.
    """
    async for first in sub:
        if coalesce_s > 0 and not sub.reached_end:
            await anyio.sleep(coalesce_s)  # the window: what arrives meanwhile joins
            batch = [first, *sub.read_ready(WINDOW_LIMIT - 1)]
            yield coalesce(batch)
        else:
            yield [(first, True), *((event, True) for event in sub.read_ready(BATCH_LIMIT))]


def accepts_gzip(accept_encoding: str) -> bool:
    """True when an ``Accept-Encoding`` value allows gzip (a ``q=0`` refuses it)."""
    for part in accept_encoding.lower().split(","):
        name, _, params = part.strip().partition(";")
        if name.strip() in ("gzip", "x-gzip", "*"):
            quality = params.strip().removeprefix("q=")
            try:
                return not params.strip() or float(quality) > 0
            except ValueError:
                return False
    return False


class GzipSend:
    """Wraps an ASGI ``send`` so that the response body goes out gzip-compressed.

    Adds ``Content-Encoding: gzip`` and ``Vary: Accept-Encoding`` to the start message;
    compresses every body message with one compressor and flushes it (``Z_SYNC_FLUSH``) so the
    client can decode each message on arrival; the last message finishes the gzip stream. A
    lock keeps concurrent senders (the event loop of the response and its ping task) in the
    compressor's order.
    """

    def __init__(self, send: Send, level: int = 6) -> None:
        self._send = send
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip framing
        self._lock = anyio.Lock()
        self.raw_bytes = 0
        self.sent_bytes = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (name, value)
                for name, value in message.get("headers", [])
                if name.lower() != b"content-length"
            ]
            headers += [(b"content-encoding", b"gzip"), (b"vary", b"Accept-Encoding")]
            await self._send({**message, "headers": headers})
            return
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        async with self._lock:
            body: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            self.raw_bytes += len(body)
            packed = self._compressor.compress(body)
            packed += self._compressor.flush(zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH)
            self.sent_bytes += len(packed)
            await self._send({**message, "body": packed})
