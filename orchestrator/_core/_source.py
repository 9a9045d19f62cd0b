"""The ``Source`` extension point: one agent's upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from ._events import SourceEvent


@runtime_checkable
class Source(Protocol):
    """One agent's upstream: anything that can stream an answer and cancel it.

    ``stream(message)`` returns an async iterator (normally an async generator) of
    :class:`SourceEvent`; the fan-out closes it with ``aclose()`` when it stops reading, so
    its ``finally`` blocks run. ``cancel()`` stops the work where it happens (for Letta: the
    run on the server); the fan-out calls it at most once per stream, shielded, with a timeout.
    """

    @property
    def agent_id(self) -> str:
        """Stable id of the agent; unique within a fan-out."""
        ...

    @property
    def label(self) -> str:
        """Display name (from the config); defaults to the agent id."""
        ...

    def stream(self, message: str) -> AsyncIterator[SourceEvent]:
        """Send ``message`` to the agent and stream its answer."""
        ...

    async def cancel(self) -> None:
        """Stop the agent's work on the server side. Must be safe to call at any time."""
        ...
