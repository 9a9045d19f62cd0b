"""Where agents come from: the ``AgentDirectory`` extension point.

Adapters (the HTTP API, the batch runner, the CLI) never build sources themselves: they ask
a directory to turn agent references (an id or a name, plus a display label) into
:class:`~orchestrator.Source` objects. ``LettaDirectory`` (in ``orchestrator.letta``) serves agents of a
Letta server; ``orchestrator.testing.ScriptedDirectory`` serves scripted agents for tests
and demos.

An unknown agent is not an exception here: its source ends at once with ``agent_error``
code ``agent_not_found``, so the other agents of the same fan-out still run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ._events import SourceEvent
from ._exceptions import ConfigError
from ._source import Source


@dataclass(frozen=True, slots=True)
class AgentRef:
    """A reference to an agent: by ``agent_id`` or by ``name``; ``label`` is for display."""

    agent_id: str | None = None
    name: str | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if not (self.agent_id or self.name):
            raise ConfigError("an agent reference needs 'agent_id' or 'name'")

    @property
    def key(self) -> str:
        """The id if given, else the name."""
        return self.agent_id or self.name or ""


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """An agent a directory knows about (for pickers in UIs and ``agents list``)."""

    agent_id: str
    name: str
    model: str | None = None
    description: str | None = None


@runtime_checkable
class AgentDirectory(Protocol):
    """Turns agent references into sources; lists the agents it knows."""

    async def list_agents(self) -> list[AgentInfo]:
        """Every agent available, for pickers and listings."""
        ...

    async def sources(self, refs: Sequence[AgentRef]) -> list[Source]:
        """One source per reference, in order; unknown agents give a failing source."""
        ...

    async def aclose(self) -> None:
        """Release connections. Safe to call twice."""
        ...


class FailedSource:
    """A source that ends at once with ``agent_error`` (e.g. an agent that does not exist)."""

    def __init__(
        self,
        agent_id: str,
        *,
        code: str,
        message: str,
        retryable: bool = False,
        label: str | None = None,
    ) -> None:
        self._agent_id = agent_id
        self._label = label or agent_id
        self.code = code
        self.message = message
        self.retryable = retryable

    @property
    def agent_id(self) -> str:
        return self._agent_id

    @property
    def label(self) -> str:
        return self._label

    async def stream(self, message: str) -> AsyncIterator[SourceEvent]:
        yield SourceEvent(
            "agent_error",
            {"code": self.code, "message": self.message, "retryable": self.retryable},
        )

    async def cancel(self) -> None:
        return None
