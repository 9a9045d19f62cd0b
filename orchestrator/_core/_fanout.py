"""The fan-out: run every source concurrently and merge them into one tagged stream."""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Unpack

import anyio
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint

from ._claims import conversation_claims
from ._events import Event, SourceEvent, build_event
from ._exceptions import ConfigError, FanOutStateError, SourceError, UnknownAgentError
from ._lane import Lane, Ready, require_delta
from ._options import FanOutOptions, FanOutOverrides, parse_policy
from ._result import AgentStatus, ErrorInfo, FanOutResult
from ._source import Source
from ._types import JSON, TERMINAL_TYPES, CancelReason, EventType
from ._waiter import EventWaiter, Waiter, waiter_factory, wake

logger = logging.getLogger("orchestrator")

# The merger hands out ready events without suspending; every so many in a row it yields to
# the event loop once, so producers and other tasks are never starved for long. At least
# this many, and at least two per agent: each loop iteration can bring one event from every
# agent, and a merger that took fewer per turn would fall further behind every turn.
_CHECKPOINT_EVERY = 256


class FanOut:
    """A running fan-out: iterate it for the merged :class:`Event` stream.

    Obtain one from :func:`open_fanout`. Iteration ends after ``fanout_done``. ``cancel()``
    stops one agent or all of them (on the server too); ``status()`` is a live snapshot;
    ``result()`` is available once every agent has ended.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        prompt: str,
        options: FanOutOptions,
        fanout_id: str | None = None,
    ) -> None:
        self.fanout_id = fanout_id or f"f-{uuid.uuid4().hex[:12]}"
        self.prompt = prompt
        self.options = options
        # Lanes with buffered events, served in turn. The start marker stands first, so
        # fanout_start comes out through the same fast path as every other event.
        self._ready: deque[Ready] = deque((_StartMarker(self),))
        self._lanes: dict[str, Lane] = {
            s.agent_id: Lane(
                s,
                options.buffer,
                fanout_id=self.fanout_id,
                ready=self._ready,
                notify=self._mark_ready,
            )
            for s in sources
        }
        self._quorum = parse_policy(options.policy)
        self._coalesce = options.overflow == "coalesce"
        self._watchdog = anyio.CancelScope()
        self._wakeup: Waiter | None = None
        self._new_waiter: Callable[[], Waiter] = EventWaiter  # replaced in _start()
        self._index = 0
        self._checkpoint_every = max(_CHECKPOINT_EVERY, 2 * len(self._lanes))
        self._next_checkpoint = self._checkpoint_every
        self._finished = False
        self._closing = False
        # Agents whose terminal event is not buffered yet: once none are left and every
        # buffer is empty, every terminal event has been delivered.
        self._unbuffered_terminals = len(self._lanes)
        self._unfinished = len(self._lanes)
        self._succeeded = 0
        self._t0 = time.monotonic()
        self._ended_at: float | None = None
        self._detached = False

    # -- public API -------------------------------------------------------------------------

    @property
    def agent_ids(self) -> list[str]:
        """The agents of this fan-out, in the order given."""
        return list(self._lanes)

    @property
    def finished(self) -> bool:
        """True once every agent has ended (their terminal events may still be buffered)."""
        return self._unfinished == 0

    def cancel(self, agent_id: str | None = None, reason: CancelReason = "user") -> bool:
        """Cancel one agent (or all with ``None``); returns whether anything was cancelled.

        The agent's stream is closed and its ``Source.cancel()`` called; it ends with
        ``agent_cancelled``. Agents that already ended are left alone. Raises
        :class:`UnknownAgentError` for an id that is not part of the fan-out.
        """
        if agent_id is None:
            lanes: Iterable[Lane] = self._lanes.values()
        else:
            try:
                lanes = (self._lanes[agent_id],)
            except KeyError:
                raise UnknownAgentError(
                    f"no agent {agent_id!r} in fan-out {self.fanout_id} "
                    f"(agents: {', '.join(self._lanes)})"
                ) from None
        hit = False
        for lane in lanes:
            if lane.finished or lane.cancel_reason is not None:
                continue
            lane.cancel_reason = reason
            lane.scope.cancel()
            hit = True
        return hit

    def detach(self) -> bool:
        """Stop reading every agent here but leave their runs going upstream.

        For handing a fan-out to another process that continues the runs (the Redis hub
        does, when its replica shuts down): the streams are closed and each agent ends here
        with ``agent_cancelled`` (reason ``disconnect``), but ``Source.cancel()`` is never
        called. Returns whether anything was still running.
        """
        self._detached = True
        return self.cancel(reason="disconnect")

    def status(self) -> dict[str, AgentStatus]:
        """Per agent: state, buffered events, counts (an :class:`AgentStatus` each)."""
        return {agent_id: lane.status() for agent_id, lane in self._lanes.items()}

    def result(self) -> FanOutResult:
        """Per-agent text, stop reason, error and metrics.

        Raises :class:`FanOutStateError` while any agent is still running.
        """
        if not self.finished:
            running = [a for a, lane in self._lanes.items() if not lane.finished]
            raise FanOutStateError(f"fan-out {self.fanout_id} still running: {', '.join(running)}")
        end = self._ended_at if self._ended_at is not None else time.monotonic()
        return FanOutResult(
            fanout_id=self.fanout_id,
            prompt=self.prompt,
            agents={agent_id: lane.result() for agent_id, lane in self._lanes.items()},
            duration_s=round(end - self._t0, 6),
        )

    def __aiter__(self) -> FanOut:
        return self

    async def __anext__(self) -> Event:
        """The next event of the merged stream.

        Ready events are handed out without suspending; a consumer's cancellation is still
        checked at least every 256 events (and every two per agent, when more agents run),
        at a checkpoint that also lets producers and other tasks run.
        """
        ready = self._ready
        while True:
            if ready:
                index = self._index
                self._index = index + 1
                event = ready.popleft().pop_nowait(index)
                if index >= self._next_checkpoint:
                    self._next_checkpoint = index + self._checkpoint_every
                    await checkpoint()
                return event
            if self._finished or self._closing:
                raise StopAsyncIteration
            if self._unbuffered_terminals == 0:
                self._finished = True
                index = self._index
                self._index = index + 1
                return self._fanout_event("fanout_done", index, self._done_data())
            # Waiting suspends anyway: the next yield is due a full stretch from here.
            self._next_checkpoint = self._index + self._checkpoint_every
            self._wakeup = wakeup = self._new_waiter()
            await wakeup

    # -- producer side ----------------------------------------------------------------------

    def _start(self, tg: TaskGroup) -> None:
        self._new_waiter = waiter_factory()
        for lane in self._lanes.values():
            tg.start_soon(self._run_lane, lane, name=f"fanout:{self.fanout_id}:{lane.agent_id}")
        if self.options.idle_timeout_s:
            tg.start_soon(self._watch_idle, self.options.idle_timeout_s, name="fanout:idle")

    async def _run_lane(self, lane: Lane) -> None:
        """One agent from start to its terminal event: deadlines, the stream, the end."""
        total_deadline = self._arm_deadlines(lane)
        terminal: SourceEvent | None = None
        try:
            with lane.scope:
                terminal = await self._pump(lane, total_deadline)
        except SourceError as exc:
            terminal = SourceEvent(
                "agent_error",
                {"code": exc.code, "message": exc.message, "retryable": exc.retryable},
            )
        except Exception as exc:
            terminal = SourceEvent(
                "agent_error",
                {
                    "code": "source_error",
                    "message": f"{type(exc).__name__}: {exc}",
                    "retryable": False,
                },
            )
        except BaseException:
            # Cancelled from outside (the whole fan-out is being torn down): settle the lane
            # so status() and result() tell the truth, then let the cancellation through.
            await self._cancel_upstream(lane)
            self._settle(
                lane, SourceEvent("agent_cancelled", {"reason": lane.cancel_reason or "disconnect"})
            )
            raise
        await self._finish(lane, terminal)

    def _arm_deadlines(self, lane: Lane) -> float | None:
        """Start the lane's clock; set the first of its deadlines. Returns the total one."""
        lane.started_at = time.monotonic()
        lane.state = "streaming"
        timeout_s = self.options.timeout_s
        first_token_timeout_s = self.options.first_token_timeout_s
        if timeout_s is None and first_token_timeout_s is None:
            return None
        now = anyio.current_time()
        total = None if timeout_s is None else now + timeout_s
        first = None if first_token_timeout_s is None else now + first_token_timeout_s
        lane.scope.deadline = min(x for x in (total, first) if x is not None)
        return total

    def _first_token_seen(self, lane: Lane, total_deadline: float | None) -> None:
        """The first-token deadline is met: only the total one applies from here on."""
        if self.options.first_token_timeout_s is not None:
            lane.scope.deadline = math.inf if total_deadline is None else total_deadline

    async def _pump(self, lane: Lane, total_deadline: float | None) -> SourceEvent:
        """Read the source into the lane; return its terminal event.

        Past the first token, a content delta takes the short path: checked, recorded and
        offered to the buffer, nothing else. Everything else goes through :meth:`_admit`.
        """
        stream = lane.source.stream(self.prompt)
        try:
            first = True
            hot = False
            text = lane.text_parts
            put_nowait = lane.put_nowait
            t0 = self._t0
            monotonic = time.monotonic
            # Unpacked at once: a buffered or waiting event keeps no tuple alive, only its
            # payload, so the garbage collector has less to look at.
            async for etype, data in stream:
                if hot and etype == "content":
                    try:
                        # ``+ ""`` is the cheapest check that the delta is a string.
                        text.append(data["delta"] + "")
                    except (KeyError, TypeError):
                        require_delta(etype, data)  # raises: the rule record() applies
                        raise  # a str subclass whose + failed: let it surface
                else:
                    if etype in TERMINAL_TYPES:
                        return SourceEvent(etype, data)
                    data = await self._admit(lane, etype, data, first)
                    first = False
                    if not hot and lane.first_token_at is not None:
                        hot = True
                        self._first_token_seen(lane, total_deadline)
                if not put_nowait(etype, data, monotonic() - t0):
                    await self._put(lane, etype, data)
            if first:
                await self._put(lane, "agent_start", {**lane.info, "run_id": None})
            # The stream ended by itself without a terminal event: a normal end.
            return SourceEvent("agent_done", {"stop_reason": "end_turn"})
        finally:
            await self._close_stream(lane, stream)

    async def _admit(self, lane: Lane, etype: EventType, data: JSON, first: bool) -> JSON:
        """Map one event that is not a plain token: start, accounting, first token."""
        if etype == "agent_start":
            data = {**lane.info, **data}
        elif first:
            await self._put(lane, "agent_start", {**lane.info, "run_id": None})
        lane.record(etype, data)
        return data

    async def _finish(self, lane: Lane, terminal: SourceEvent | None) -> None:
        """Stop the run upstream unless it ended by itself; deliver the terminal event."""
        if terminal is None and lane.stalled_after is not None:
            terminal = SourceEvent(
                "agent_error",
                {
                    "code": "stalled",
                    "message": f"no event from the agent for {lane.stalled_after:g} s",
                    "retryable": True,
                },
            )
        if terminal is None or terminal.type != "agent_done":
            await self._cancel_upstream(lane)
        if terminal is None:
            terminal = SourceEvent("agent_cancelled", {"reason": lane.cancel_reason or "timeout"})
        await self._put(lane, *self._settle(lane, terminal))
        self._unbuffered_terminals -= 1
        if self._quorum is not None and self._succeeded == self._quorum:
            self.cancel(reason="policy")

    async def _watch_idle(self, idle_s: float) -> None:
        """End agents that sent nothing for ``idle_s`` seconds (``agent_error`` ``stalled``).

        Counts events taken in, so the hot path pays nothing. A lane paused by backpressure
        is waiting for the reader, not for its agent, and is never counted as idle.
        """
        interval = min(idle_s / 4, 1.0)
        with self._watchdog:
            while True:
                await anyio.sleep(interval)
                now = time.monotonic()
                for lane in self._lanes.values():
                    if lane.state != "streaming" or lane.cancel_reason is not None:
                        continue
                    produced = lane.produced
                    if produced != lane.watch_count or lane.space is not None:
                        lane.watch_count = produced
                        lane.watch_since = now
                    elif now - lane.watch_since >= idle_s and lane.stalled_after is None:
                        lane.stalled_after = idle_s
                        lane.scope.cancel()

    def _settle(self, lane: Lane, terminal: SourceEvent) -> SourceEvent:
        """Record how the lane ended; return the terminal event to deliver."""
        lane.ended_at = time.monotonic()
        data: JSON = dict(terminal.data)
        if terminal.type == "agent_done":
            lane.state = "done"
            lane.stop_reason = data.setdefault("stop_reason", "end_turn")
            data["text_length"] = lane.text_length = sum(map(len, lane.text_parts))
            data["metrics"] = lane.metrics().to_dict()
            self._succeeded += 1
        elif terminal.type == "agent_error":
            lane.state = "error"
            data.setdefault("code", "source_error")
            data.setdefault("message", "")
            data.setdefault("retryable", False)
            lane.error = ErrorInfo(data["code"], str(data["message"]), bool(data["retryable"]))
        else:
            lane.state = "cancelled"
            lane.cancel_reason = data["reason"]
        self._unfinished -= 1
        if self._unfinished == 0:
            self._ended_at = lane.ended_at
            self._watchdog.cancel()
        return SourceEvent(terminal.type, data)

    async def _put(self, lane: Lane, etype: EventType, data: JSON) -> None:
        """Buffer an event, waiting for room (or coalescing) while the lane is full."""
        if self._closing:
            # Nobody reads any more and the lane is cancelled: let the cancellation in, so a
            # source that never suspends cannot keep its producer spinning.
            await checkpoint()
            return
        t = time.monotonic() - self._t0
        if lane.put_nowait(etype, data, t):
            return
        if self._coalesce and lane.try_coalesce(etype, data, t):
            # A source that never suspends must still let the merger run.
            await checkpoint()
            return
        while True:
            lane.space = space = self._new_waiter()
            await space
            if self._closing or lane.put_nowait(etype, data, t):
                return

    def _mark_ready(self, lane: Lane) -> None:
        if self._closing:
            return
        self._ready.append(lane)
        if self._wakeup is not None:
            wake(self._wakeup)
            self._wakeup = None

    async def _cancel_upstream(self, lane: Lane) -> None:
        if lane.cancel_called:
            return
        lane.cancel_called = True
        if self._detached:
            return  # someone else carries the runs on: leave them running upstream
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.options.cancel_timeout_s):
            try:
                await lane.source.cancel()
            except Exception:  # best effort: the stream is closed regardless
                logger.warning("cancel() of agent %s failed", lane.agent_id, exc_info=True)

    async def _close_stream(self, lane: Lane, stream: AsyncIterator[SourceEvent]) -> None:
        aclose = getattr(stream, "aclose", None)
        if aclose is None:
            return
        if not lane.scope.cancel_called and not self._closing:
            await aclose()
            return
        # Cancelled: the stream's own cleanup (closing an HTTP response) must still run.
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.options.cancel_timeout_s):
            await aclose()

    def _close(self) -> None:
        """Leaving the fan-out: cancel whatever still runs and release waiting producers."""
        self.cancel(reason="disconnect")
        self._closing = True
        self._watchdog.cancel()
        self._ready.clear()  # iteration stops here, whatever is still buffered
        for lane in self._lanes.values():
            lane.release()
        if self._wakeup is not None:
            wake(self._wakeup)
            self._wakeup = None

    # -- fan-out level events ---------------------------------------------------------------

    def _fanout_event(self, etype: EventType, index: int, data: JSON) -> Event:
        t = time.monotonic() - self._t0
        return build_event(Event, (etype, self.fanout_id, None, None, 0, index, t, data))

    def _start_data(self) -> JSON:
        return {
            "prompt": self.prompt,
            "agents": [
                {**lane.info, "agent_id": lane.agent_id, "label": lane.label}
                for lane in self._lanes.values()
            ],
            "options": self.options.to_dict(),
        }

    def _done_data(self) -> JSON:
        summary: dict[str, JSON] = {}
        for agent_id, lane in self._lanes.items():
            entry: JSON = {"label": lane.label, "state": lane.state, "events": lane.seq}
            if lane.state == "done":
                entry["stop_reason"] = lane.stop_reason
                entry["text_length"] = lane.text_length
            elif lane.state == "error" and lane.error is not None:
                entry["code"] = lane.error.code
                entry["message"] = lane.error.message
            elif lane.state == "cancelled":
                entry["reason"] = lane.cancel_reason
            entry["metrics"] = lane.metrics().to_dict()
            summary[agent_id] = entry
        states = [lane.state for lane in self._lanes.values()]
        return {
            "summary": summary,
            "counts": {s: states.count(s) for s in ("done", "error", "cancelled")},
            "duration_s": round(time.monotonic() - self._t0, 6),
        }


class _StartMarker:
    """The first entry of the merger's ready queue: it hands out ``fanout_start``."""

    __slots__ = ("fanout",)

    def __init__(self, fanout: FanOut) -> None:
        self.fanout = fanout

    def pop_nowait(self, index: int) -> Event:
        return self.fanout._fanout_event("fanout_start", index, self.fanout._start_data())


def _check_inputs(sources: Sequence[Source], prompt: str) -> None:
    if isinstance(sources, str | bytes) or not isinstance(sources, Sequence):
        raise ConfigError("sources must be a sequence of Source objects")
    if not sources:
        raise ConfigError("a fan-out needs at least one source, got none")
    if not isinstance(prompt, str):
        raise ConfigError(f"prompt must be a string, got {type(prompt).__name__}")
    seen: set[str] = set()
    for n, source in enumerate(sources):
        # Duck-typed on purpose: isinstance() against a runtime Protocol inspects every
        # member of the protocol, per object, which shows with a thousand sources.
        if not all(hasattr(source, attr) for attr in ("agent_id", "label", "stream", "cancel")):
            raise ConfigError(
                f"sources[{n}] is not a Source (needs agent_id, label, stream(), cancel()): "
                f"{source!r}"
            )
        if source.agent_id in seen:
            raise ConfigError(f"duplicate agent id {source.agent_id!r} in sources")
        seen.add(source.agent_id)


@asynccontextmanager
async def open_fanout(
    sources: Sequence[Source],
    prompt: str,
    options: FanOutOptions | None = None,
    *,
    fanout_id: str | None = None,
    **overrides: Unpack[FanOutOverrides],
) -> AsyncIterator[FanOut]:
    """Send ``prompt`` to every source at once; yield the running :class:`FanOut`.

    Use it as ``async with open_fanout(sources, prompt) as fanout: async for event in
    fanout: ...``. Options come as a :class:`FanOutOptions`, as keyword overrides of its
    fields (``buffer=16, timeout_s=30``), or both (the keywords win). Leaving the block early
    (``break``, an exception, cancellation) cancels every agent that still runs, on the
    server too, and waits until their streams are closed.

    Raises :class:`ConfigError` before anything starts when an option is invalid, and
    :class:`ConversationBusyError` when a source's conversation already has a run in this
    process (the busy rule).
    """
    _check_inputs(sources, prompt)
    options = FanOutOptions.resolve(options, overrides).validate(len(sources))
    fanout = FanOut(sources, prompt, options, fanout_id)
    conversation_claims.acquire(fanout.fanout_id, sources)
    try:
        async with anyio.create_task_group() as tg:
            fanout._start(tg)
            try:
                yield fanout
            finally:
                fanout._close()
    except BaseExceptionGroup as group:
        # Lanes never raise (failures become agent_error events), so a group holds what
        # the caller's own block raised: give it back unwrapped.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        conversation_claims.release(fanout.fanout_id)


async def collect(
    sources: Sequence[Source],
    prompt: str,
    options: FanOutOptions | None = None,
    **overrides: Unpack[FanOutOverrides],
) -> FanOutResult:
    """Run a fan-out to the end and return only the final result.

    For callers who want answers, not the stream. Takes the same options as
    :func:`open_fanout` and raises the same errors.
    """
    async with open_fanout(sources, prompt, options, **overrides) as fanout:
        async for _ in fanout:
            pass
    return fanout.result()
