"""What a fan-out reports: live per-agent status and the final result."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ._types import JSON, AgentState, CancelReason


@dataclass(frozen=True, slots=True)
class Metrics:
    """Timing of one agent: time to first token, total duration and output rate."""

    ttft_s: float | None = None
    duration_s: float | None = None
    tokens_per_s: float | None = None

    def to_dict(self) -> JSON:
        """JSON-ready data."""
        return {
            "ttft_s": self.ttft_s,
            "duration_s": self.duration_s,
            "tokens_per_s": self.tokens_per_s,
        }


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why an agent failed: a stable ``code``, a human ``message`` and ``retryable``."""

    code: str
    message: str
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """A live snapshot of one agent inside a running fan-out (see ``FanOut.status()``).

    ``buffered`` never exceeds the fan-out's ``buffer``; ``paused`` is true while the
    agent's upstream is not being read because its buffer is full.
    """

    agent_id: str
    label: str
    state: AgentState
    buffered: int
    produced: int
    delivered: int
    coalesced: int
    paused: bool


@dataclass(frozen=True, slots=True)
class AgentResult:
    """The outcome of one agent: its full text and how it ended."""

    agent_id: str
    label: str
    state: AgentState
    text: str = ""
    reasoning: str = ""
    stop_reason: str | None = None
    error: ErrorInfo | None = None
    cancel_reason: CancelReason | None = None
    run_id: str | None = None
    metrics: Metrics = field(default_factory=Metrics)
    usage: Mapping[str, Any] = field(default_factory=dict)
    tool_calls: tuple[Mapping[str, Any], ...] = ()

    @property
    def ok(self) -> bool:
        """True when the agent finished normally (``agent_done``)."""
        return self.state == "done"

    def to_dict(self) -> JSON:
        """JSON-ready data."""
        out = asdict(self)
        out["usage"] = dict(self.usage)
        out["tool_calls"] = [dict(call) for call in self.tool_calls]
        return out


@dataclass(frozen=True, slots=True)
class FanOutResult:
    """Per-agent results of a finished fan-out, in the order the sources were given."""

    fanout_id: str
    prompt: str
    agents: Mapping[str, AgentResult]
    duration_s: float

    def __getitem__(self, agent_id: str) -> AgentResult:
        return self.agents[agent_id]

    def __iter__(self) -> Iterator[AgentResult]:
        return iter(self.agents.values())

    def __len__(self) -> int:
        return len(self.agents)

    @property
    def texts(self) -> dict[str, str]:
        """Final text per agent id."""
        return {agent_id: result.text for agent_id, result in self.agents.items()}

    @property
    def ok(self) -> bool:
        """True when every agent finished normally."""
        return all(result.ok for result in self.agents.values())

    def to_dict(self) -> JSON:
        """JSON-ready data."""
        return {
            "fanout_id": self.fanout_id,
            "prompt": self.prompt,
            "duration_s": self.duration_s,
            "agents": {agent_id: r.to_dict() for agent_id, r in self.agents.items()},
        }
