"""The retained event log of one fan-out: bounded, replayable, read by many subscribers.

Every event of a fan-out is appended once, in ``index`` order. Readers (an SSE response, a
WebSocket forwarder, a resume after a dropped connection) subscribe from any retained index
and read at their own pace: replay and live reading are the same loop over the same list, so
a reader never sees a gap or a duplicate.

Memory stays bounded: the log keeps at most ``max_events``. When it is full, the oldest
event is dropped only once no live subscriber still needs it; until then ``append`` waits,
which pauses the fan-out's merger and lets the per-agent buffers apply backpressure upstream.
A reader that asks for events that were already dropped gets :class:`FanOutExpiredError`.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType

import anyio

from .._core._events import Event
from .._core._exceptions import ConfigError, FanOutExpiredError, FanOutStateError


class EventLog:
    """A bounded, replayable log of one fan-out's events.

    Use :meth:`subscribe` to read; the fan-out's owner calls :meth:`append` for each event
    and :meth:`close` after the last one. ``first_index`` is the index of the first event
    appended (a copy of a log whose oldest events are gone starts there).
    """

    def __init__(self, max_events: int = 10_000, *, first_index: int = 0) -> None:
        if max_events < 1:
            raise ConfigError(f"max_events must be >= 1, got {max_events}")
        if first_index < 0:
            raise ConfigError(f"first_index must be >= 0, got {first_index}")
        self.max_events = max_events
        self._events: deque[Event] = deque()
        # A copy of a log kept elsewhere (another replica's, in Redis) starts where that
        # log's retained part starts.
        self._first = first_index
        self._closed = False
        # Made only when a reader has to wait: an append that nobody waits for (a reader
        # busy sending, or none at all) then costs no event object.
        self._changed: anyio.Event | None = None
        self._space: anyio.Event | None = None
        self._subscribers: set[LogSubscription] = set()

    @property
    def first_index(self) -> int:
        """Index of the oldest retained event (equals :attr:`next_index` when empty)."""
        return self._first

    @property
    def next_index(self) -> int:
        """Index the next appended event gets; also the number of events ever appended."""
        return self._first + len(self._events)

    @property
    def closed(self) -> bool:
        """True once the last event was appended; subscribers end after reading it."""
        return self._closed

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    def last(self) -> Event | None:
        """The newest event, if any is retained."""
        return self._events[-1] if self._events else None

    async def append(self, event: Event) -> None:
        """Add the next event; waits while the log is full and a reader needs the oldest.

        Raises :class:`ValueError` when ``event.index`` is not the next index and
        :class:`FanOutStateError` after :meth:`close`.
        """
        if self._closed:
            raise FanOutStateError("append() after close(): the log is complete")
        if event.index != self.next_index:
            raise ValueError(f"expected event index {self.next_index}, got {event.index}")
        while len(self._events) >= self.max_events:
            if all(sub.next_index > self._first for sub in self._subscribers):
                self._events.popleft()
                self._first += 1
                continue
            self._space = space = anyio.Event()
            await space.wait()
        self._events.append(event)
        self._notify()

    def close(self) -> None:
        """No more events will come; readers end after the last one. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._notify()

    def snapshot(self, after: int = -1) -> list[Event]:
        """The retained events with an index greater than ``after``.

        Raises :class:`FanOutExpiredError` when some of them were already dropped.
        """
        start = self._check(after)
        return list(self._events)[start - self._first :]

    def subscribe(self, after: int = -1) -> LogSubscription:
        """A reader of every event with an index greater than ``after``, live to the end.

        It is registered at once (so nothing it needs is dropped), and must be closed: use
        ``async with log.subscribe(n) as sub: async for event in sub: ...``. Raises
        :class:`FanOutExpiredError` when events after ``after`` were already dropped.
        """
        sub = LogSubscription(self, self._check(after))
        self._subscribers.add(sub)
        return sub

    def check(self, after: int) -> None:
        """Raise :class:`FanOutExpiredError` if events after ``after`` were already dropped."""
        self._check(after)

    # -- internals --------------------------------------------------------------------------

    def _check(self, after: int) -> int:
        start = max(after + 1, 0)
        if start < self._first:
            raise FanOutExpiredError(
                f"events {start}..{self._first - 1} are no longer retained "
                f"(the log keeps {self.max_events}; oldest retained is {self._first})"
            )
        return min(start, self.next_index)

    def _notify(self) -> None:
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    def _wait_changed(self) -> anyio.Event:
        changed = self._changed
        if changed is None:
            changed = self._changed = anyio.Event()
        return changed

    def _release(self, sub: LogSubscription) -> None:
        self._subscribers.discard(sub)
        self._wake_appender()

    def _wake_appender(self) -> None:
        if self._space is not None:
            self._space.set()
            self._space = None

    def _read(self, sub: LogSubscription) -> Event | None:
        offset = sub.next_index - self._first
        if offset >= len(self._events):
            return None
        event = self._events[offset]
        sub.next_index += 1
        if offset == 0:
            self._wake_appender()
        return event


class LogSubscription:
    """One reader's position in an :class:`EventLog`; an async iterator of its events.

    Obtain it from :meth:`EventLog.subscribe`. Iteration ends after the log is closed and
    drained (:attr:`reached_end` then holds). Closing it (``aclose()`` or leaving the
    ``async with`` block) releases the events it pinned; closing twice is safe.
    """

    def __init__(self, log: EventLog, next_index: int) -> None:
        self._log = log
        self.next_index = next_index
        self._closed = False

    @property
    def reached_end(self) -> bool:
        """True when every event of a closed log has been read."""
        return self._log.closed and self.next_index >= self._log.next_index

    @property
    def last_index(self) -> int:
        """Index of the last event read (``-1`` before any)."""
        return self.next_index - 1

    def read_ready(self, limit: int = 256) -> list[Event]:
        """The events available right now (at most ``limit``), without waiting."""
        out: list[Event] = []
        while len(out) < limit and (event := self._log._read(self)) is not None:
            out.append(event)
        return out

    def __aiter__(self) -> LogSubscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._closed:
                raise StopAsyncIteration
            event = self._log._read(self)
            if event is not None:
                return event
            if self._log.closed:
                raise StopAsyncIteration
            # Nothing can be appended between the read above and this wait: no suspension.
            await self._log._wait_changed().wait()

    async def aclose(self) -> None:
        """Stop reading and release the log. Safe to call twice; never waits."""
        self.close()

    def close(self) -> None:
        """Synchronous :meth:`aclose`, for cleanup code that must not suspend."""
        if not self._closed:
            self._closed = True
            self._log._release(self)

    async def __aenter__(self) -> LogSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
