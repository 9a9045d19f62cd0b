"""The fan-out hub: runs fan-outs in the background and retains their events for readers.

Servers (the HTTP API) do not iterate a :class:`~orchestrator.FanOut` inside a request: a
request would then own the fan-out's lifetime, and a second reader or a resume after a
dropped connection could not exist. Instead the hub runs each fan-out in its own task group,
appends every event to the fan-out's :class:`~orchestrator.EventLog`, and readers watch the
log from any retained index. A finished fan-out stays readable for ``retention_s`` seconds.

What happens when the last reader drops before the end is the fan-out's ``on_disconnect``:
``"cancel"`` cancels its agents (reason ``disconnect``, on the server too); ``"continue"``
lets it run on, resumable from the log.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Literal, Protocol, TypeAlias

import anyio
from anyio.abc import TaskGroup

from .._core._claims import conversation_claims
from .._core._events import Event
from .._core._exceptions import (
    CapacityError,
    ConfigError,
    FanOutExpiredError,
    UnknownAgentError,
    UnknownFanOutError,
)
from .._core._fanout import FanOut, open_fanout
from .._core._options import FanOutOptions
from .._core._source import Source
from .._core._types import JSON, CancelReason
from ._log import EventLog, LogSubscription

logger = logging.getLogger("orchestrator.hub")

#: What a fan-out does when its last streaming reader goes away before the end.
OnDisconnect: TypeAlias = Literal["cancel", "continue"]

#: Called with every event the hub retains (metrics, logging); must not block.
EventObserver: TypeAlias = Callable[[Event], None]

#: Awaited when this replica takes over a dead replica's fan-out, with its id and the events
#: logged so far, before the continuation's events reach the observers (shared hubs only).
TakeoverHook: TypeAlias = Callable[[str, Sequence[Event]], Awaitable[None]]

# Ids of fan-outs that left the hub, so a late reader gets "expired" rather than "unknown".
_MAX_TOMBSTONES = 10_000


class SharedState(Protocol):
    """What a shared backend (the Redis hub) adds to a :class:`HubFanOut`: readers counted
    across replicas. Its methods never wait: they schedule the work they need."""

    def reader_joined(self, entry: HubFanOut) -> None: ...

    def reader_left(self, entry: HubFanOut, *, early: bool, joined: bool = True) -> None: ...


class HubFanOut:
    """A fan-out run by a :class:`FanOutHub`: its log, its state, and control over it."""

    def __init__(
        self,
        fanout_id: str,
        sources: Sequence[Source],
        prompt: str,
        options: FanOutOptions,
        on_disconnect: OnDisconnect,
        max_events: int,
    ) -> None:
        self.fanout_id = fanout_id
        self.prompt = prompt
        self.options = options
        self.on_disconnect: OnDisconnect = on_disconnect
        self.agents: dict[str, str] = {s.agent_id: s.label for s in sources}
        self.log = EventLog(max_events)
        self.created_at = time.time()
        self.finished_at: float | None = None
        self.error: str | None = None
        self._sources = list(sources)
        self._fanout: FanOut | None = None
        self._pending: list[tuple[str | None, CancelReason]] = []
        self._watchers = 0
        self._done = anyio.Event()
        self._ended_clock: float | None = None
        # Set by a shared backend (the Redis hub): readers and cancels then count across
        # every replica, not only in this process.
        self._shared: SharedState | None = None

    @property
    def running(self) -> bool:
        """True until the fan-out has ended and its log is complete."""
        return not self._done.is_set()

    async def wait(self) -> None:
        """Wait until the fan-out has ended."""
        await self._done.wait()

    def cancel(self, agent_id: str | None = None, reason: CancelReason = "user") -> bool:
        """Cancel one agent (or all); the effect shows in the stream as ``agent_cancelled``.

        Returns whether anything was still running. Raises :class:`UnknownAgentError` for an
        id that is not part of this fan-out.
        """
        if agent_id is not None and agent_id not in self.agents:
            raise UnknownAgentError(
                f"no agent {agent_id!r} in fan-out {self.fanout_id} "
                f"(agents: {', '.join(self.agents)})"
            )
        if not self.running:
            return False
        return self._cancel_running(agent_id, reason)

    def _cancel_running(self, agent_id: str | None, reason: CancelReason) -> bool:
        # What cancel() does once the id is checked and the fan-out still runs; kinds of
        # fan-out run elsewhere (the Redis hub's) replace it.
        if self._fanout is None:
            # Not started yet: applied the moment the fan-out exists.
            self._pending.append((agent_id, reason))
            return True
        return self._fanout.cancel(agent_id, reason)

    def _end(self) -> None:
        # The log is complete: readers end after its last event, waiters wake.
        self.log.close()
        self.finished_at = self.finished_at or time.time()
        self._done.set()

    @asynccontextmanager
    async def watch(self, after: int = -1) -> AsyncIterator[LogSubscription]:
        """Read the events after index ``after``, replayed then live, as a streaming client.

        Leaving the block before the end counts as the client going away: when no other
        watcher remains and ``on_disconnect`` is ``"cancel"``, every agent is cancelled with
        reason ``disconnect``. Raises :class:`FanOutExpiredError` when those events were
        already dropped from the log.
        """
        sub = self.log.subscribe(after)
        self._watchers += 1
        if self._shared is not None:
            self._shared.reader_joined(self)
        try:
            yield sub
        finally:
            # No await in here: this runs while the reader is being cancelled.
            self._watchers -= 1
            sub.close()
            if self._shared is not None:
                self._shared.reader_left(self, early=not sub.reached_end)
            elif not sub.reached_end:
                self.client_gone()

    def client_gone(self) -> bool:
        """A streaming client went away before the end: apply ``on_disconnect``.

        Cancels every agent (reason ``disconnect``) when ``on_disconnect`` is ``"cancel"``
        and no other watcher remains; returns whether it did. :meth:`watch` calls it; call
        it yourself when a client leaves before it could start watching. Never waits.
        """
        if self._watchers or self.on_disconnect != "cancel" or not self.running:
            return False
        if self._shared is not None:
            # Readers on other replicas count too: the backend decides, later.
            self._shared.reader_left(self, early=True, joined=False)
            return False
        logger.info("fan-out %s: last reader left, cancelling", self.fanout_id)
        return self.cancel(reason="disconnect")

    def summary(self) -> JSON:
        """State and per-agent summary, JSON-ready (for ``GET /v1/fanouts/{id}``)."""
        return {
            **self.brief(),
            "options": {**self.options.to_dict(), "on_disconnect": self.on_disconnect},
            "first_retained_index": self.log.first_index,
            "agents": self._agent_summaries(),
        }

    def brief(self) -> JSON:
        """A short, JSON-ready description (for listings)."""
        return {
            "fanout_id": self.fanout_id,
            "state": "running" if self.running else "finished",
            "prompt": self.prompt,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "events": self.log.next_index,
            "watchers": self._watchers,
            "error": self.error,
        }

    def _agent_summaries(self) -> dict[str, JSON]:
        last = self.log.last()
        if last is not None and last.type == "fanout_done":
            return {agent_id: dict(entry) for agent_id, entry in last.data["summary"].items()}
        if self._fanout is not None:
            return {
                agent_id: {
                    "label": status.label,
                    "state": status.state,
                    "events": status.delivered,
                    "buffered": status.buffered,
                    "paused": status.paused,
                }
                for agent_id, status in self._fanout.status().items()
            }
        state = "pending" if self.running else "cancelled"
        return {
            a: {"label": label, "state": state, "events": 0} for a, label in self.agents.items()
        }

    async def _run(self, observers: Sequence[EventObserver]) -> None:
        try:
            async with open_fanout(
                self._sources, self.prompt, self.options, fanout_id=self.fanout_id
            ) as fanout:
                self._fanout = fanout
                for agent_id, reason in self._pending:
                    fanout.cancel(agent_id, reason)
                self._pending.clear()
                async for event in fanout:
                    await self.log.append(event)
                    for observe in observers:
                        observe(event)
        except Exception as exc:
            logger.exception("fan-out %s failed", self.fanout_id)
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            # The conversations were claimed by start(); open_fanout gives them back too,
            # but it may never have run (cancelled before it started).
            conversation_claims.release(self.fanout_id)
            self._end()


class FanOutHub:
    """Runs fan-outs in the background and keeps their events for readers.

    Obtain one from :func:`open_hub`. :meth:`start` launches a fan-out and returns its
    :class:`HubFanOut`; :meth:`get` finds it again by id while it is retained.
    """

    def __init__(
        self,
        tg: TaskGroup,
        *,
        max_active: int = 32,
        retention_s: float = 600.0,
        max_events: int = 10_000,
        max_retained: int = 1_000,
        retry_after_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("max_active", max_active),
            ("retention_s", retention_s),
            ("max_events", max_events),
            ("max_retained", max_retained),
        ):
            if value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value!r}")
        self._tg = tg
        self.max_active = max_active
        self.retention_s = retention_s
        self.max_events = max_events
        self.max_retained = max_retained
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._fanouts: OrderedDict[str, HubFanOut] = OrderedDict()
        self._ended_at: dict[str, float] = {}
        self._tombstones: OrderedDict[str, None] = OrderedDict()
        self._observers: list[EventObserver] = []
        self._takeover_hooks: list[TakeoverHook] = []
        self._notes: OrderedDict[str, str] = OrderedDict()

    @property
    def active(self) -> int:
        """Fan-outs that are still running."""
        return sum(1 for f in self._fanouts.values() if f.running)

    def active_agent_streams(self) -> int:
        """Agents of running fan-outs that have not ended yet."""
        total = 0
        for entry in self._fanouts.values():
            if entry.running:
                summaries = entry._agent_summaries()
                total += sum(
                    1 for s in summaries.values() if s["state"] in ("pending", "streaming")
                )
        return total

    def add_observer(self, observer: EventObserver) -> None:
        """Call ``observer`` with every event the hub retains, in order."""
        self._observers.append(observer)

    def add_takeover_hook(self, hook: TakeoverHook) -> None:
        """Await ``hook(fanout_id, logged_events)`` when this replica takes a dead replica's
        fan-out over (never called by the in-memory hub, which has no other replicas)."""
        self._takeover_hooks.append(hook)

    def start(
        self,
        sources: Sequence[Source],
        prompt: str,
        options: FanOutOptions | None = None,
        *,
        on_disconnect: OnDisconnect = "cancel",
        fanout_id: str | None = None,
    ) -> HubFanOut:
        """Start a fan-out in the background and return it.

        Raises :class:`ConfigError` (bad options, duplicate agents, no agents),
        :class:`CapacityError` (already ``max_active`` fan-outs running) and
        :class:`ConversationBusyError` (a conversation already has a run in this process)
        before anything starts.
        """
        options, fanout_id = self._check_start(sources, options, on_disconnect, fanout_id)
        # Claimed here, not when the background task gets to run: the caller learns now.
        conversation_claims.acquire(fanout_id, sources)
        entry = HubFanOut(fanout_id, sources, prompt, options, on_disconnect, self.max_events)
        self._fanouts[fanout_id] = entry
        self._tg.start_soon(self._run, entry, name=f"hub:{fanout_id}")
        return entry

    def _check_start(
        self,
        sources: Sequence[Source],
        options: FanOutOptions | None,
        on_disconnect: OnDisconnect,
        fanout_id: str | None,
    ) -> tuple[FanOutOptions, str]:
        """The checks :meth:`start` makes before anything starts; the options and the id."""
        options = (options or FanOutOptions()).validate(len(sources))
        if not sources:
            raise ConfigError("a fan-out needs at least one agent, got none")
        ids = [s.agent_id for s in sources]
        duplicates = sorted({a for a in ids if ids.count(a) > 1})
        if duplicates:
            raise ConfigError(f"duplicate agent id(s) in one fan-out: {', '.join(duplicates)}")
        if on_disconnect not in ("cancel", "continue"):
            raise ConfigError(
                f"on_disconnect must be 'cancel' or 'continue', got {on_disconnect!r}"
            )
        self.reap()
        if self.active >= self.max_active:
            raise CapacityError(
                f"{self.active} fan-outs are running, the maximum is {self.max_active}",
                retry_after_s=self.retry_after_s,
            )
        fanout_id = fanout_id or f"f-{uuid.uuid4().hex[:12]}"
        if fanout_id in self._fanouts or fanout_id in self._tombstones:
            raise ConfigError(f"fan-out id {fanout_id!r} is already taken")
        return options, fanout_id

    async def submit(
        self,
        sources: Sequence[Source],
        prompt: str,
        options: FanOutOptions | None = None,
        *,
        on_disconnect: OnDisconnect = "cancel",
        fanout_id: str | None = None,
    ) -> HubFanOut:
        """:meth:`start`, for every backend: the Redis hub also takes its locks first.

        Raises what :meth:`start` raises, and :class:`HubUnavailableError` when a shared
        backend cannot be reached.
        """
        return self.start(
            sources, prompt, options, on_disconnect=on_disconnect, fanout_id=fanout_id
        )

    async def find(self, fanout_id: str) -> HubFanOut:
        """:meth:`get`, for every backend: the Redis hub also finds other replicas' fan-outs."""
        return self.get(fanout_id)

    async def listing(self, limit: int = 50) -> list[JSON]:
        """The retained fan-outs, newest first, as :meth:`HubFanOut.brief` dicts."""
        return [entry.brief() for entry in self.recent(limit)]

    def health(self) -> JSON:
        """The backend and whether it works, for ``/healthz``."""
        return {"backend": "memory", "ok": True}

    async def remember(self, key: str, value: str, *, keep_existing: bool = False) -> str:
        """Keep a small note that every replica can :meth:`recall` for ``retention_s``;
        returns the note now kept (an existing one wins with ``keep_existing``).

        For what an adapter must find again on whichever replica a client's next request
        lands (the AI SDK's chat id -> its latest fan-out, a blind mode's drawn order). This
        hub keeps the newest ``max_retained`` notes in memory; the Redis hub keeps them in
        Redis.
        """
        existing = self._notes.get(key)
        if keep_existing and existing is not None:
            return existing
        self._notes.pop(key, None)
        self._notes[key] = value
        while len(self._notes) > self.max_retained:
            self._notes.popitem(last=False)
        return value

    async def recall(self, key: str) -> str | None:
        """The note kept under ``key``, if any."""
        return self._notes.get(key)

    def get(self, fanout_id: str) -> HubFanOut:
        """The retained fan-out of that id.

        Raises :class:`FanOutExpiredError` when it has left the retention window and
        :class:`UnknownFanOutError` when this hub never had it.
        """
        self.reap()
        entry = self._fanouts.get(fanout_id)
        if entry is not None:
            return entry
        if fanout_id in self._tombstones:
            raise FanOutExpiredError(
                f"fan-out {fanout_id} has expired (retained {self.retention_s:g} s after its end)"
            )
        raise UnknownFanOutError(f"no fan-out {fanout_id!r}")

    def recent(self, limit: int = 50) -> list[HubFanOut]:
        """The retained fan-outs, newest first."""
        self.reap()
        return list(reversed(self._fanouts.values()))[:limit]

    def reap(self) -> None:
        """Forget fan-outs whose retention window has passed (also called on every access)."""
        now = self._clock()
        finished = [f for f in self._fanouts.values() if not f.running]
        overflow = len(self._fanouts) - self.max_retained
        for entry in finished:
            ended = self._ended_at.setdefault(entry.fanout_id, now)
            if overflow > 0 or now - ended >= self.retention_s:
                overflow -= 1
                self._forget(entry.fanout_id)

    def cancel_all(self, reason: CancelReason = "disconnect") -> None:
        """Cancel every running fan-out (used when the server shuts down)."""
        for entry in list(self._fanouts.values()):
            entry.cancel(reason=reason)

    def _forget(self, fanout_id: str) -> None:
        del self._fanouts[fanout_id]
        self._ended_at.pop(fanout_id, None)
        self._tombstones[fanout_id] = None
        while len(self._tombstones) > _MAX_TOMBSTONES:
            self._tombstones.popitem(last=False)

    async def _run(self, entry: HubFanOut) -> None:
        await entry._run(self._observers)
        self._ended_at[entry.fanout_id] = self._clock()

    async def _reap_forever(self, interval_s: float) -> None:
        while True:
            await anyio.sleep(interval_s)
            self.reap()


@asynccontextmanager
async def open_hub(
    *,
    max_active: int = 32,
    retention_s: float = 600.0,
    max_events: int = 10_000,
    max_retained: int = 1_000,
    retry_after_s: float = 2.0,
    shutdown_timeout_s: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[FanOutHub]:
    """Run a :class:`FanOutHub` for the duration of the block.

    ``max_active`` fan-outs may run at once (:class:`CapacityError` past that, advising
    ``retry_after_s``); each keeps up to ``max_events`` events, readable for ``retention_s``
    seconds after its end, and at most ``max_retained`` finished ones are kept. Leaving the
    block cancels every fan-out still running (reason ``disconnect``, on the server too) and
    waits up to ``shutdown_timeout_s`` for them to record their end before stopping them
    outright. Raises :class:`ConfigError` for a setting out of range.
    """
    async with anyio.create_task_group() as tg:
        hub = FanOutHub(
            tg,
            max_active=max_active,
            retention_s=retention_s,
            max_events=max_events,
            max_retained=max_retained,
            retry_after_s=retry_after_s,
            clock=clock,
        )
        tg.start_soon(hub._reap_forever, min(hub.retention_s / 4, 30.0), name="hub:reaper")
        try:
            yield hub
        finally:
            hub.cancel_all()
            with anyio.CancelScope(shield=True), anyio.move_on_after(shutdown_timeout_s):
                for entry in list(hub._fanouts.values()):
                    await entry.wait()
            tg.cancel_scope.cancel()
