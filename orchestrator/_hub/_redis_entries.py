"""The Redis hub's fan-outs: one it owns, another replica's (a mirror), one taken over."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import orjson

from .._core._options import FanOutOptions
from .._core._types import JSON, CancelReason
from ._fold import fold_agents
from ._hub import HubFanOut, SharedState
from ._redis_wire import (
    number_field,
    text_field,
)


class _Commands(SharedState, Protocol):
    """What a mirror needs of its hub: readers counted across replicas, commands sent."""

    max_events: int

    def _spawn(self, coro: Awaitable[None]) -> None: ...

    async def send_cancel(
        self, fanout_id: str, agent_id: str | None, reason: CancelReason
    ) -> None: ...


@dataclass
class Owned:
    """What the owner keeps about a fan-out it publishes."""

    entry: HubFanOut
    locks: list[str]
    fenced: bool = False
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    published: anyio.Event = field(default_factory=anyio.Event)
    # Handed over (this replica shuts down): publish only the events before this index.
    stop_at: int | None = None


class RecordedFanOut(HubFanOut):
    """A fan-out this replica knows from its registry entry and its log in Redis."""

    def __init__(self, fanout_id: str, record: Mapping[bytes, bytes], max_events: int):
        """Raises ``ValueError`` or ``TypeError`` for an entry this hub did not write."""
        super().__init__(
            fanout_id,
            [],
            text_field(record, "prompt"),
            FanOutOptions(**orjson.loads(record.get(b"options", b"{}"))),
            "continue" if text_field(record, "on_disconnect") == "continue" else "cancel",
            max_events,
        )
        self.agents = dict(orjson.loads(record.get(b"agents", b"{}")))
        self.created_at = number_field(record, "created_at") or time.time()
        self.finished_at = number_field(record, "finished_at")
        self.error = text_field(record, "error") or None

    def _agent_summaries(self) -> dict[str, JSON]:
        # Run elsewhere (or continued here): described by its log alone.
        last = self.log.last()
        if last is not None and last.type == "fanout_done":
            return {a: dict(summary) for a, summary in last.data["summary"].items()}
        folds = fold_agents(self.agents, self.log.snapshot(self.log.first_index - 1))
        return {
            agent_id: {"label": fold.label, "state": fold.state, "events": fold.seq}
            for agent_id, fold in folds.items()
        }


class MirrorFanOut(RecordedFanOut):
    """Another replica's fan-out, read from Redis: its log is a copy, its cancel a command."""

    def __init__(
        self, hub: _Commands, fanout_id: str, record: Mapping[bytes, bytes], max_events: int
    ):
        super().__init__(fanout_id, record, max_events)
        self.owner = text_field(record, "owner") or None
        self._hub = hub
        self._shared = hub

    def _cancel_running(self, agent_id: str | None, reason: CancelReason) -> bool:
        # The owner applies it, wherever it runs.
        self._hub._spawn(self._hub.send_cancel(self.fanout_id, agent_id, reason))
        return True

    def brief(self) -> JSON:
        return {**super().brief(), "owner": self.owner}


class TakenOver(RecordedFanOut):
    """A dead replica's fan-out, continued here from its log."""

    def _cancel_running(self, agent_id: str | None, reason: CancelReason) -> bool:
        inner = self._fanout
        if inner is not None and agent_id is not None and agent_id not in inner.agent_ids:
            return False  # it had ended before the takeover
        return super()._cancel_running(agent_id, reason)
