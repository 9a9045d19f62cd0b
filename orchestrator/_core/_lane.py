"""One agent inside a fan-out: its bounded buffer and what it has produced so far."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio

from ._events import Event, build_event
from ._exceptions import SourceError
from ._result import AgentResult, AgentStatus, ErrorInfo, Metrics
from ._source import Source
from ._types import DELTA_TYPES, JSON, AgentState, CancelReason, EventType
from ._waiter import Waiter, wake


def require_delta(etype: EventType, data: JSON) -> str:
    """The ``delta`` of a text event; raises :class:`SourceError` ``invalid_event`` if absent.

    One rule for every text event of a stream, the first and the thousandth alike: a
    ``content`` or ``reasoning`` event without a string ``delta`` ends the agent with
    ``agent_error`` naming the field, rather than passing as empty text.
    """
    delta = data.get("delta")
    if isinstance(delta, str):
        return delta
    got = "missing" if delta is None else f"a {type(delta).__name__}"
    raise SourceError(
        f"the source sent a {etype!r} event whose 'delta' field is {got}; it must be a string",
        code="invalid_event",
    )


class Ready(Protocol):
    """An entry of the merger's ready queue: it has an event to hand out."""

    def pop_nowait(self, index: int) -> Event:
        """Take the next event as the merged stream's event number ``index``."""
        ...


class Lane:
    """Per-agent state: a bounded FIFO of source events (with arrival times) plus accounting.

    Every buffer operation lives here, in the shape of anyio's memory streams: the producer
    calls :meth:`put_nowait` (or :meth:`try_coalesce` when full) and waits elsewhere when it
    returns ``False``; the merger calls :meth:`pop_nowait`. The lane never awaits: waiting is
    the fan-out's job, with ``space`` as the producer's wake-up while the buffer is full.
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
        "fanout_id",
        "first_token_at",
        "info",
        "kinds",
        "label",
        "low_water",
        "notify",
        "ready",
        "reasoning_parts",
        "run_id",
        "scope",
        "seq",
        "source",
        "space",
        "stalled_after",
        "started_at",
        "state",
        "stop_reason",
        "text_length",
        "text_parts",
        "times",
        "tool_calls",
        "usage",
        "watch_count",
        "watch_since",
    )

    def __init__(
        self,
        source: Source,
        capacity: int,
        *,
        fanout_id: str = "",
        ready: deque[Ready] | None = None,
        notify: Callable[[Lane], None] | None = None,
    ) -> None:
        self.source = source
        self.agent_id = source.agent_id
        self.label = source.label
        self.fanout_id = fanout_id
        # The merger's queue of lanes with buffered events, and how to tell it that this
        # lane just became ready (it may be waiting for exactly that).
        self.ready: deque[Ready] = deque() if ready is None else ready
        self.notify: Callable[[Lane], None] = notify or self.ready.append
        info: Mapping[str, Any] | None = getattr(source, "info", None)
        # What the source tells about itself beyond id and label (Letta agent, conversation,
        # model): carried by fanout_start and agent_start.
        self.info: JSON = dict(info) if info else {}
        self.capacity = capacity
        # Wake a paused producer only once the buffer has drained to a quarter: it then
        # refills three quarters in one go instead of being woken for every single event,
        # and still has a quarter in hand while it gets going. Each wake-up leaves a future
        # and a callback for the garbage collector (docs/architecture.md).
        self.low_water = capacity // 4
        # The buffer is three parallel deques (payloads, types, arrival times) rather than one
        # of tuples: a tuple is tracked by the garbage collector until a collection finds it
        # holds nothing tracked, so every buffered event would cost GC work; a dict of
        # strings, a str and a float are never tracked (docs/architecture.md).
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
        # The idle watchdog's view: events taken in at its last look, since when, and the
        # idle time after which it stopped the lane (None while it has not).
        self.watch_count = -1
        self.watch_since = 0.0
        self.stalled_after: float | None = None

    @property
    def finished(self) -> bool:
        """True once the lane has produced its terminal event."""
        return self.state in ("done", "error", "cancelled")

    @property
    def produced(self) -> int:
        """Events taken in so far: delivered, buffered, or merged into another."""
        return self.seq + len(self.buf) + self.coalesced

    def put_nowait(self, etype: EventType, data: JSON, t: float) -> bool:
        """Buffer one event that arrived at ``t``; ``False`` (and nothing done) when full."""
        buf = self.buf
        if len(buf) >= self.capacity:
            return False
        buf.append(data)
        self.kinds.append(etype)
        self.times.append(t)
        if len(buf) == 1:
            self.notify(self)
        return True

    def try_coalesce(self, etype: EventType, data: JSON, t: float) -> bool:
        """Merge a text delta into the newest buffered event of the same message, if any."""
        buf = self.buf
        if not buf or etype not in DELTA_TYPES or self.kinds[-1] != etype:
            return False
        last = buf[-1]
        if last.get("message_id") != data.get("message_id"):
            return False
        # The newest event's other fields win (a resumable source's ``cursor`` must
        # name the last source event the merged delta holds).
        merged = dict(data)
        merged["delta"] = last["delta"] + data["delta"]  # both checked by require_delta
        buf[-1] = merged
        self.times[-1] = t
        self.coalesced += 1
        return True

    def pop_nowait(self, index: int) -> Event:
        """Take the oldest buffered event as the merged stream's event number ``index``.

        Only for a lane taken from the ready queue (so it holds an event). Puts the lane
        back on that queue while it holds more, and wakes a paused producer once the buffer
        has drained to its low-water mark.
        """
        buf = self.buf
        data = buf.popleft()
        etype = self.kinds.popleft()
        t = self.times.popleft()
        if buf:
            self.ready.append(self)
        space = self.space
        if space is not None and len(buf) <= self.low_water:
            wake(space)
            self.space = None
        self.seq = seq = self.seq + 1
        return build_event(
            Event, (etype, self.fanout_id, self.agent_id, self.label, seq, index, t, data)
        )

    def release(self) -> None:
        """Wake the producer if it waits for room (the fan-out is closing)."""
        if self.space is not None:
            wake(self.space)
            self.space = None

    def record(self, etype: EventType, data: JSON) -> None:
        """Account for a produced event: text, reasoning, tools, usage, first token.

        Raises :class:`SourceError` for a text event without a string ``delta``.
        """
        if etype == "content" or etype == "reasoning":
            delta = require_delta(etype, data)
            if self.first_token_at is None:
                self.first_token_at = time.monotonic()
            (self.text_parts if etype == "content" else self.reasoning_parts).append(delta)
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
            produced=self.produced,
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
