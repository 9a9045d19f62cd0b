"""Type aliases shared across the package."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

JSON: TypeAlias = dict[str, Any]

EventType: TypeAlias = Literal[
    "fanout_start",
    "agent_start",
    "reasoning",
    "content",
    "tool_call",
    "tool_result",
    "usage",
    "agent_done",
    "agent_error",
    "agent_cancelled",
    "fanout_done",
]

#: What an agent's buffer does when it is full (README, "The Python API"; docs/architecture.md).
Overflow: TypeAlias = Literal["coalesce", "block"]

#: Why an agent was cancelled.
CancelReason: TypeAlias = Literal["user", "timeout", "policy", "disconnect"]

#: Life cycle of one agent inside a fan-out.
AgentState: TypeAlias = Literal["pending", "streaming", "done", "error", "cancelled"]

EVENT_TYPES: frozenset[str] = frozenset(EventType.__args__)  # type: ignore[attr-defined]
TERMINAL_TYPES: frozenset[str] = frozenset({"agent_done", "agent_error", "agent_cancelled"})
DELTA_TYPES: frozenset[str] = frozenset({"content", "reasoning"})
CANCEL_REASONS: frozenset[str] = frozenset(CancelReason.__args__)  # type: ignore[attr-defined]
