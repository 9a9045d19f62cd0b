"""One-shot wake-ups between the merger and the producers, cheap on asyncio.

The fan-out suspends in two places: the merger when no agent has an event ready, and a
producer when its agent's buffer is full. Both wait for a one-shot signal. On asyncio
that signal is a bare future: an ``anyio.Event`` wraps an ``asyncio.Event`` that itself
waits on a future, and with a thousand agents the extra objects and calls were a tenth of
the merge time and most of the garbage collector's work. Cancellation is unchanged: anyio
cancels a task by cancelling whatever future it waits on, and that is this one. Other
backends (trio) get an ``anyio.Event`` behind the same small interface.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any, Protocol

import anyio
import sniffio


class Waiter(Protocol):
    """The part of :class:`asyncio.Future` the fan-out uses: await it, set it once."""

    def done(self) -> bool: ...

    def set_result(self, result: None, /) -> None: ...

    def __await__(self) -> Generator[Any, None, None]: ...


class EventWaiter:
    """A :class:`Waiter` on any anyio backend, backed by an ``anyio.Event``."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = anyio.Event()

    def done(self) -> bool:
        return self._event.is_set()

    def set_result(self, result: None, /) -> None:
        self._event.set()

    def __await__(self) -> Generator[Any, None, None]:
        return self._event.wait().__await__()


def waiter_factory() -> Callable[[], Waiter]:
    """What makes waiters in the running event loop (call it from inside the loop)."""
    if sniffio.current_async_library() == "asyncio":
        return asyncio.get_running_loop().create_future
    return EventWaiter


def wake(waiter: Waiter) -> None:
    """Release whoever waits on ``waiter``; harmless if it was woken or cancelled already."""
    if not waiter.done():
        waiter.set_result(None)
