"""The one way tests wait for a real condition that offers no event: poll with a deadline.

Use it only where nothing can be awaited (another process, uvicorn's ``started`` flag, a
server-side status); within a process, wait on the event itself.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable

import anyio

Condition = Callable[[], bool | Awaitable[bool]]


async def wait_until(
    condition: Condition, what: str, *, timeout_s: float = 20.0, interval_s: float = 0.01
) -> None:
    """Poll ``condition`` (sync or async) until it holds; fail naming ``what`` after a while."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await anyio.sleep(interval_s)


def wait_until_sync(
    condition: Callable[[], bool], what: str, *, timeout_s: float = 60.0, interval_s: float = 0.02
) -> None:
    """:func:`wait_until` for threads and sync fixtures."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
