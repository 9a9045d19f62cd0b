"""The ``Source`` extension point: one agent's upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

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


@dataclass(frozen=True)
class Checkpoint:
    """What a hub's log already holds of one agent whose owner died mid-answer.

    A new owner hands it to a reviver (``AgentDirectory.revive``), which returns a
    :class:`Source` whose ``stream()`` yields only what comes after: it continues the agent's
    run where it is (for Letta: replaying the run's stream from the server's Redis and
    skipping the first ``cursor`` source events), or ends with ``agent_error``
    ``replica_lost`` (retryable) after cancelling the run when it cannot.

    ``spec`` is the source's own :meth:`Revivable.resume_spec` (JSON, no secrets); ``run_id``
    comes from the agent's ``agent_start``; ``cursor`` is the ``cursor`` field of the agent's
    newest logged event (the number of source events that event completes), ``None`` when no
    logged event carried one; ``started`` says whether ``agent_start`` is in the log.
    """

    agent_id: str
    label: str
    spec: Mapping[str, Any]
    run_id: str | None = None
    cursor: int | None = None
    started: bool = False


@runtime_checkable
class Revivable(Protocol):
    """A source a hub can rebuild on another replica (see :class:`Checkpoint`)."""

    def resume_spec(self) -> Mapping[str, Any] | None:
        """JSON describing how to rebuild this source (no secrets), or ``None`` if it can't be."""
        ...
