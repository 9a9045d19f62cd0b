"""One agent inside a fan-out: its bounded buffer and what it has produced so far."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import anyio

from ._result import AgentResult, AgentStatus, ErrorInfo, Metrics
from ._source import Source
from ._types import DELTA_TYPES, JSON, AgentState, CancelReason, EventType
from ._waiter import Waiter


class Lane:
    """Per-agent state: a bounded FIFO of source events (with arrival times) plus accounting.

    The producer side (the fan-out's producer task) appends; the merger pops. The lane
    itself never awaits: waiting is the fan-out's job, with ``space`` as the producer's
    wake-up event while the buffer is full.
    """

    __slots__ = (
        "agent_id",
        "buf",
        "cancel_called",
        "cancel_reason",
        "capacity",
        "coalesced",
        "ended_at",
        "error",
        "first_token_at",
        "kinds",
        "label",
        "low_water",
        "reasoning_parts",
        "run_id",
        "scope",
        "seq",
        "source",
        "space",
        "started_at",
        "state",
        "stop_reason",
        "text_length",
        "text_parts",
        "times",
        "tool_calls",
        "usage",
    )

    def __init__(self, source: Source, capacity: int) -> None:
        self.source = source
        self.agent_id = source.agent_id
        self.label = source.label
        self.capacity = capacity
        # Wake a paused producer only once the buffer has drained to a quarter: it then
        # refills three quarters in one go instead of being woken for every single event,
        # and still has a quarter in hand while it gets going. (At half, a thousand agents
        # meant half again as many wake-ups, each leaving a future and a callback for the
        # garbage collector to promote: 6 % slower at N=1000.)
        self.low_water = capacity // 4
        # The buffer is three parallel deques (payloads, types, arrival times) rather than one
        # of SourceEvent objects: a named tuple is never untracked by the garbage collector,
        # but a dict of strings and a str are, so thousands of buffered events cost no GC work.
        self.buf: deque[JSON] = deque()
        self.kinds: deque[EventType] = deque()
        self.times: deque[float] = deque()
        self.space: Waiter | None = None
        self.scope = anyio.CancelScope()
        self.state: AgentState = "pending"
        self.cancel_reason: CancelReason | None = None
        self.cancel_called = False
        self.seq = 0
        self.coalesced = 0
        self.started_at: float | None = None
        self.first_token_at: float | None = None
        self.ended_at: float | None = None
        self.run_id: str | None = None
        self.stop_reason: str | None = None
        self.error: ErrorInfo | None = None
        self.text_parts: list[str] = []
        self.text_length = 0  # set when the agent is done
        self.reasoning_parts: list[str] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.usage: dict[str, Any] = {}

    @property
    def finished(self) -> bool:
        """True once the lane has produced its terminal event."""
        return self.state in ("done", "error", "cancelled")

    def try_coalesce(self, etype: EventType, data: JSON, t: float) -> bool:
        """Merge a text delta into the newest buffered event of the same message, if any."""
        if not self.buf or etype not in DELTA_TYPES or self.kinds[-1] != etype:
            return False
        last = self.buf[-1]
        if last.get("message_id") != data.get("message_id"):
            return False
        merged = dict(last)
        merged["delta"] = merged.get("delta", "") + data.get("delta", "")
        self.buf[-1] = merged
        self.times[-1] = t
        self.coalesced += 1
        return True

    def append(self, etype: EventType, data: JSON, t: float) -> None:
        """Buffer one event (the caller checked there is room)."""
        self.buf.append(data)
        self.kinds.append(etype)
        self.times.append(t)

    def record(self, etype: EventType, data: JSON) -> None:
        """Account for a produced event: text, reasoning, tools, usage, first token."""
        if etype == "content" or etype == "reasoning":
            if self.first_token_at is None:
                self.first_token_at = time.monotonic()
            (self.text_parts if etype == "content" else self.reasoning_parts).append(
                data.get("delta", "")
            )
        elif etype == "tool_call":
            if self.first_token_at is None:
                self.first_token_at = time.monotonic()
            self.tool_calls.append(dict(data))
        elif etype == "tool_result":
            call_id = data.get("tool_call_id")
            for call in reversed(self.tool_calls):
                if call.get("tool_call_id") == call_id:
                    call["status"] = data.get("status")
                    call["result"] = data.get("result")
                    break
        elif etype == "usage":
            self.usage.update(data)
        elif etype == "agent_start":
            self.run_id = data.get("run_id") or self.run_id

    def metrics(self) -> Metrics:
        """Time to first token, duration and tokens per second, as far as known."""
        if self.started_at is None:
            return Metrics()
        end = self.ended_at if self.ended_at is not None else time.monotonic()
        ttft = None if self.first_token_at is None else self.first_token_at - self.started_at
        rate = None
        if self.first_token_at is not None:
            tokens = self.usage.get("completion_tokens") or (
                len(self.text_parts) + len(self.reasoning_parts)
            )
            span = end - self.first_token_at
            if span > 0 and tokens:
                rate = round(tokens / span, 3)
        return Metrics(
            ttft_s=None if ttft is None else round(ttft, 6),
            duration_s=round(end - self.started_at, 6),
            tokens_per_s=rate,
        )

    def status(self) -> AgentStatus:
        """A snapshot for ``FanOut.status()``."""
        return AgentStatus(
            agent_id=self.agent_id,
            label=self.label,
            state=self.state,
            buffered=len(self.buf),
            # Every event taken in was delivered, is buffered, or was merged into another.
            produced=self.seq + len(self.buf) + self.coalesced,
            delivered=self.seq,
            coalesced=self.coalesced,
            paused=self.space is not None,
        )

    def result(self) -> AgentResult:
        """The final outcome of the agent."""
        return AgentResult(
            agent_id=self.agent_id,
            label=self.label,
            state=self.state,
            text="".join(self.text_parts),
            reasoning="".join(self.reasoning_parts),
            stop_reason=self.stop_reason,
            error=self.error,
            cancel_reason=self.cancel_reason if self.state == "cancelled" else None,
            run_id=self.run_id,
            metrics=self.metrics(),
            usage=dict(self.usage),
            tool_calls=tuple(self.tool_calls),
        )
