"""What a fan-out's logged events say about each agent, without the fan-out object.

A replica that reads another replica's fan-out, or takes over a dead replica's, has only
the log. :class:`AgentFold` reads an agent's state back from its events: started, ended and
how, its last ``seq`` and ``cursor``, its run id, and the entry ``fanout_done`` gives it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._core._events import Event
from .._core._types import JSON, TERMINAL_TYPES

_STATE_OF = {"agent_done": "done", "agent_error": "error", "agent_cancelled": "cancelled"}


@dataclass
class AgentFold:
    """One agent as its logged events describe it."""

    label: str
    state: str = "pending"
    seq: int = 0
    started: bool = False
    run_id: str | None = None
    cursor: int | None = None
    started_t: float | None = None
    first_token_t: float | None = None
    ended_t: float | None = None
    text_length: int = 0
    tokens: int = 0
    completion_tokens: int = 0
    terminal: Mapping[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """True once a terminal event is logged."""
        return self.state in ("done", "error", "cancelled")

    def add(self, event: Event) -> None:
        """Account for one of the agent's events (in order)."""
        self.seq = event.seq
        cursor = event.get("cursor")
        if type(cursor) is int:
            self.cursor = cursor
        etype = event.type
        if etype == "agent_start":
            self.started = True
            self.state = "streaming"
            self.started_t = event.t
            self.run_id = event.get("run_id") or self.run_id
        elif etype in ("content", "reasoning", "tool_call"):
            if self.first_token_t is None:
                self.first_token_t = event.t
            if etype == "content":
                self.text_length += len(event.delta)
            self.tokens += 1
        elif etype == "usage":
            self.completion_tokens = int(event.get("completion_tokens") or 0)
        elif etype in TERMINAL_TYPES:
            self.state = _STATE_OF[etype]
            self.ended_t = event.t
            self.terminal = event.data

    def summary(self, now_t: float) -> JSON:
        """The agent's entry in ``fanout_done``'s ``summary`` (as the merger writes it)."""
        entry: JSON = {"label": self.label, "state": self.state, "events": self.seq}
        if self.state == "done":
            entry["stop_reason"] = self.terminal.get("stop_reason")
            entry["text_length"] = self.text_length
        elif self.state == "error":
            entry["code"] = self.terminal.get("code")
            entry["message"] = self.terminal.get("message")
        elif self.state == "cancelled":
            entry["reason"] = self.terminal.get("reason")
        entry["metrics"] = self.metrics(now_t)
        return entry

    def metrics(self, now_t: float) -> JSON:
        """Time to first token, duration and rate, from the events' times."""
        if self.started_t is None:
            return {"ttft_s": None, "duration_s": None, "tokens_per_s": None}
        end = self.ended_t if self.ended_t is not None else now_t
        ttft = None if self.first_token_t is None else self.first_token_t - self.started_t
        rate = None
        if self.first_token_t is not None:
            span = end - self.first_token_t
            tokens = self.completion_tokens or self.tokens
            if span > 0 and tokens:
                rate = round(tokens / span, 3)
        return {
            "ttft_s": None if ttft is None else round(ttft, 6),
            "duration_s": round(end - self.started_t, 6),
            "tokens_per_s": rate,
        }


def fold_agents(agents: Mapping[str, str], events: Iterable[Event]) -> dict[str, AgentFold]:
    """Each agent of ``agents`` (id to label) as ``events`` (a log, in order) describe it."""
    folds = {agent_id: AgentFold(label) for agent_id, label in agents.items()}
    for event in events:
        agent_id = event.agent_id
        if agent_id is not None:
            fold = folds.get(agent_id)
            if fold is None:
                fold = folds[agent_id] = AgentFold(event.label or agent_id)
            fold.add(event)
    return folds


def done_data(folds: Mapping[str, AgentFold], now_t: float) -> JSON:
    """A ``fanout_done`` payload for agents described by ``folds`` (all finished)."""
    states = [fold.state for fold in folds.values()]
    return {
        "summary": {agent_id: fold.summary(now_t) for agent_id, fold in folds.items()},
        "counts": {s: states.count(s) for s in ("done", "error", "cancelled")},
        "duration_s": round(now_t, 6),
    }
