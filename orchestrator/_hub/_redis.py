"""The Redis hub: several replicas share their fan-outs through Redis.

Each replica runs :class:`RedisFanOutHub`. The replica that starts a fan-out owns it: it
runs the agents, as the in-memory hub does, and also publishes every event to Redis. Any
other replica serves, resumes and cancels it from there, and takes it over when the owner
dies. What Redis holds (keys under a prefix, ``orchestrator:`` by default; ``{id}`` is a
fan-out id, in braces so that a cluster keeps one fan-out's keys in one slot):

- ``fo:{id}:events``: the event log, a Stream. Entry ids are ``<index>-1``, so a reader asks
  for "after index n" directly and a second writer of an index is refused (fencing).
  ``XADD MAXLEN ~ max_events``, one pipeline per batch of events that are ready together.
- ``fo:{id}``: the registry entry (state, agents, options, owner, times, how to rebuild each
  source); ``index`` (a sorted set by creation time) and ``running`` (a set) list them.
- ``fo:{id}:lease``: the owner's lease, ``SET NX PX``, renewed by a heartbeat. When it runs
  out (the owner was killed), another replica takes the lease and the fan-out over.
- ``fo:{id}:cmds`` and the channel ``fo:{id}:ctl``: cancel commands. A command is pushed to
  the list, then announced on the channel the owner listens on; the owner drains the list
  then, on its heartbeat, and when it takes a fan-out over, so no command is lost while the
  owner changes.
- ``fo:{id}:readers``: streaming readers per replica, for ``on_disconnect: cancel`` (the
  last reader anywhere; readers of a replica whose heartbeat stopped do not count).
- ``conv:<agent>/<conversation>``: the busy rule's lock per conversation, with a lease.
- ``replica:<id>``: each replica's heartbeat.

Readers on the owner read its memory, as with the in-memory hub. Other replicas keep one
copy of the log per fan-out, fed by one reader task (``XRANGE`` then ``XREAD BLOCK``) however
many clients read it. When Redis fails, new fan-outs are refused
(:class:`HubUnavailableError`), running ones keep streaming to the owner's readers, and the
hub catches up with Redis when it is back. Needs asyncio (redis-py's asyncio client).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import anyio
import orjson
from anyio.abc import TaskGroup

from .._core._events import Event
from .._core._exceptions import (
    ConfigError,
    ConversationBusyError,
    HubUnavailableError,
    UnknownAgentError,
    UnknownFanOutError,
)
from .._core._fanout import open_fanout
from .._core._options import FanOutOptions, parse_policy
from .._core._source import Checkpoint, Source
from .._core._types import JSON, CancelReason
from ._fold import AgentFold, done_data, fold_agents
from ._hub import FanOutHub, HubFanOut, OnDisconnect
from ._log import EventLog, LogSubscription

try:  # the ``redis`` extra
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError, ResponseError
except ImportError:  # pragma: no cover - exercised by the lean-install test
    aioredis = None  # type: ignore[assignment]
    RedisError = ResponseError = Exception  # type: ignore[assignment,misc]

logger = logging.getLogger("orchestrator.hub.redis")

#: Builds, on a new owner, the source that continues an agent of a dead replica's fan-out;
#: ``None`` when it cannot (the agent then ends with ``agent_error`` ``replica_lost``).
Reviver: TypeAlias = Callable[[Checkpoint], Awaitable[Source | None]]

_BATCH = 512  # events per XADD pipeline at most
_SCAN_PAGE = 500  # entries per XRANGE / XREAD reply

# Renew a key's expiry only while it still holds our value (a lease, a lock).
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
# Delete a key only while it still holds our value.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
# Take every key or none: returns the positions of keys someone else holds.
_LOCK_ALL = """
local busy = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('get', key)
  if holder and holder ~= ARGV[1] then
    table.insert(busy, i - 1)
    table.insert(busy, holder)
  end
end
if #busy > 0 then
  return busy
end
for _, key in ipairs(KEYS) do
  redis.call('set', key, ARGV[1], 'PX', ARGV[2])
end
return busy
"""


def redact_url(url: str) -> str:
    """The URL without its password (for logs, ``/healthz`` and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class _Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.running = f"{prefix}running"
        self.index = f"{prefix}index"
        self.ctl_pattern = f"{prefix}fo:*:ctl"

    def registry(self, fanout_id: str) -> str:
        return f"{self.prefix}fo:{{{fanout_id}}}"

    def events(self, fanout_id: str) -> str:
        return f"{self.prefix}fo:{{{fanout_id}}}:events"

    def lease(self, fanout_id: str) -> str:
        return f"{self.prefix}fo:{{{fanout_id}}}:lease"

    def cmds(self, fanout_id: str) -> str:
        return f"{self.prefix}fo:{{{fanout_id}}}:cmds"

    def ctl(self, fanout_id: str) -> str:
        return f"{self.prefix}fo:{{{fanout_id}}}:ctl"

    def readers(self, fanout_id: str) -> str:
        return f"{self.prefix}fo:{{{fanout_id}}}:readers"

    def replica(self, replica_id: str) -> str:
        return f"{self.prefix}replica:{replica_id}"

    def conversation(self, key: str) -> str:
        return f"{self.prefix}conv:{key}"

    def fanout_of_ctl(self, channel: str) -> str | None:
        head = f"{self.prefix}fo:{{"
        if channel.startswith(head) and channel.endswith("}:ctl"):
            return channel[len(head) : -len("}:ctl")]
        return None


def _entry_id(index: int) -> str:
    # "After index -1" (everything) is "after 0-0", the smallest id.
    return f"{index}-1" if index >= 0 else "0-0"


def _index_of(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def _decode(fields: Mapping[bytes, bytes]) -> Event:
    return Event.from_dict(orjson.loads(fields[b"e"]))


def _text(record: Mapping[bytes, bytes], name: str, default: str = "") -> str:
    value = record.get(name.encode())
    return value.decode() if value is not None else default


def _number(record: Mapping[bytes, bytes], name: str) -> float | None:
    value = record.get(name.encode())
    return float(value) if value else None


@dataclass
class _Owned:
    """What the owner keeps about a fan-out it publishes."""

    entry: HubFanOut
    locks: list[str]
    fenced: bool = False
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    published: anyio.Event = field(default_factory=anyio.Event)
    # Handed over (this replica shuts down): publish only the events before this index.
    stop_at: int | None = None


def _logged_summaries(entry: HubFanOut) -> dict[str, JSON]:
    # A fan-out run elsewhere (or continued here) is described by its log alone.
    last = entry.log.last()
    if last is not None and last.type == "fanout_done":
        return {a: dict(summary) for a, summary in last.data["summary"].items()}
    folds = fold_agents(entry.agents, entry.log.snapshot(entry.log.first_index - 1))
    return {
        agent_id: {"label": fold.label, "state": fold.state, "events": fold.seq}
        for agent_id, fold in folds.items()
    }


class MirrorFanOut(HubFanOut):
    """Another replica's fan-out, read from Redis: its log is a copy, its cancel a command."""

    def __init__(self, hub: RedisFanOutHub, fanout_id: str, record: Mapping[bytes, bytes]):
        agents = orjson.loads(record.get(b"agents", b"{}"))
        options = FanOutOptions(**orjson.loads(record.get(b"options", b"{}")))
        super().__init__(
            fanout_id,
            [],
            _text(record, "prompt"),
            options,
            "continue" if _text(record, "on_disconnect") == "continue" else "cancel",
            hub.max_events,
        )
        self.agents = dict(agents)
        self.created_at = _number(record, "created_at") or time.time()
        self.finished_at = _number(record, "finished_at")
        self.error = _text(record, "error") or None
        self.owner = _text(record, "owner") or None
        self._hub = hub
        self._shared = hub

    def cancel(self, agent_id: str | None = None, reason: CancelReason = "user") -> bool:
        """Send the owner a cancel command (through Redis); returns whether it still runs."""
        if agent_id is not None and agent_id not in self.agents:
            raise UnknownAgentError(
                f"no agent {agent_id!r} in fan-out {self.fanout_id} "
                f"(agents: {', '.join(self.agents)})"
            )
        if not self.running:
            return False
        self._hub._spawn(self._hub.send_cancel(self.fanout_id, agent_id, reason))
        return True

    def brief(self) -> JSON:
        return {**super().brief(), "owner": self.owner}

    def _agent_summaries(self) -> dict[str, JSON]:
        return _logged_summaries(self)


class _TakenOver(HubFanOut):
    """A dead replica's fan-out, continued here from its log."""

    def cancel(self, agent_id: str | None = None, reason: CancelReason = "user") -> bool:
        if agent_id is not None and agent_id not in self.agents:
            raise UnknownAgentError(
                f"no agent {agent_id!r} in fan-out {self.fanout_id} "
                f"(agents: {', '.join(self.agents)})"
            )
        if not self.running:
            return False
        inner = self._fanout
        if inner is None:
            self._pending.append((agent_id, reason))
            return True
        if agent_id is not None and agent_id not in inner.agent_ids:
            return False  # it had ended before the takeover
        return inner.cancel(agent_id, reason)

    def _agent_summaries(self) -> dict[str, JSON]:
        return _logged_summaries(self)


class RedisFanOutHub(FanOutHub):
    """A :class:`FanOutHub` whose fan-outs every replica sharing the Redis can serve.

    Obtain one from :func:`open_redis_hub`. The in-memory hub's methods keep their meaning
    for the fan-outs this replica owns; :meth:`submit`, :meth:`find` and :meth:`listing` are
    the ones that reach every replica's fan-outs (the HTTP API uses only those). ``active``
    and ``max_active`` count this replica's own fan-outs.
    """

    def __init__(
        self,
        tg: TaskGroup,
        client: Any,
        *,
        url: str,
        lease_s: float,
        replica_id: str,
        prefix: str,
        revive: Reviver | None,
        block_ms: int,
        disconnect_grace_s: float = 2.0,
        **options: Any,
    ) -> None:
        super().__init__(tg, **options)
        self.disconnect_grace_s = disconnect_grace_s
        self._r = client
        self.url = redact_url(url)
        self.lease_s = lease_s
        self.replica_id = replica_id
        self.keys = _Keys(prefix)
        self.revive = revive
        self.block_ms = block_ms
        self._owned: dict[str, _Owned] = {}
        self.ok = False
        self.last_error: str | None = "not connected yet"
        self.takeovers = 0
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._lock_all = client.register_script(_LOCK_ALL)

    # -- the hub interface ------------------------------------------------------------------

    @property
    def active(self) -> int:
        """This replica's own fan-outs that are still running."""
        return sum(1 for owned in self._owned.values() if owned.entry.running)

    def health(self) -> JSON:
        return {
            "backend": "redis",
            "ok": self.ok,
            "url": self.url,
            "replica": self.replica_id,
            "owned": len(self._owned),
            "takeovers": self.takeovers,
            "error": None if self.ok else self.last_error,
        }

    def _require_redis(self) -> None:
        if not self.ok:
            raise HubUnavailableError(
                f"Redis at {self.url} is unreachable ({self.last_error}); "
                "no new fan-out can start until it is back"
            )

    async def submit(
        self,
        sources: Sequence[Source],
        prompt: str,
        options: FanOutOptions | None = None,
        *,
        on_disconnect: OnDisconnect = "cancel",
        fanout_id: str | None = None,
    ) -> HubFanOut:
        """Start a fan-out owned by this replica, visible to every replica.

        Raises what :meth:`FanOutHub.start` raises (``ConversationBusyError`` also for a
        conversation another replica runs), and :class:`HubUnavailableError` when Redis
        cannot be reached.
        """
        options, fanout_id = self._check_start(sources, options, on_disconnect, fanout_id)
        self._require_redis()
        keys = _conversation_keys(sources)
        try:
            await self._lock_conversations(fanout_id, sources, keys)
        except RedisError as exc:
            raise self._unavailable(exc) from None
        try:
            await self._register(fanout_id, sources, prompt, options, on_disconnect)
            entry = self.start(
                sources, prompt, options, on_disconnect=on_disconnect, fanout_id=fanout_id
            )
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await self._forget_locks(fanout_id, keys)
            if isinstance(exc, RedisError):
                raise self._unavailable(exc) from None
            raise
        self._own(entry, keys, after=-1)
        return entry

    async def find(self, fanout_id: str) -> HubFanOut:
        """The fan-out of that id, wherever it runs (a copy read from Redis if elsewhere).

        Raises :class:`UnknownFanOutError` when Redis has no such fan-out (never started,
        or its retention passed), and :class:`HubUnavailableError` when Redis is down and
        this replica does not hold it.
        """
        self.reap()
        entry = self._fanouts.get(fanout_id)
        if entry is not None:
            return entry
        try:
            record = await self._r.hgetall(self.keys.registry(fanout_id))
        except RedisError as exc:
            raise self._unavailable(exc) from None
        if not record:
            raise UnknownFanOutError(f"no fan-out {fanout_id!r}")
        try:
            # Caught up before anyone reads it: a reader resuming after index n gets n+1 on.
            events = await self._read_all(fanout_id)
        except RedisError as exc:
            raise self._unavailable(exc) from None
        entry = self._fanouts.get(fanout_id)  # found by another request meanwhile
        if entry is not None:
            return entry
        mirror = MirrorFanOut(self, fanout_id, record)
        mirror.log = EventLog(self.max_events, first_index=events[0].index if events else 0)
        for event in events:
            await mirror.log.append(event)  # nobody reads it yet: never waits
        self._fanouts[fanout_id] = mirror
        if events and events[-1].type == "fanout_done":
            self._ended(mirror)
        else:
            self._tg.start_soon(self._follow, mirror, name=f"hub:follow:{fanout_id}")
        return mirror

    async def listing(self, limit: int = 50) -> list[JSON]:
        """Every replica's retained fan-outs, newest first."""
        try:
            ids = [
                i.decode() for i in await self._r.zrevrange(self.keys.index, 0, max(0, limit - 1))
            ]
            pipe = self._r.pipeline(transaction=False)
            for fanout_id in ids:
                pipe.hgetall(self.keys.registry(fanout_id))
            records = await pipe.execute()
        except RedisError as exc:
            raise self._unavailable(exc) from None
        out: list[JSON] = []
        gone: list[str] = []
        for fanout_id, record in zip(ids, records, strict=True):
            if not record:
                gone.append(fanout_id)
                continue
            local = self._fanouts.get(fanout_id)
            out.append(
                {**local.brief(), "owner": self.replica_id}
                if local is not None and not isinstance(local, MirrorFanOut)
                else {
                    "fanout_id": fanout_id,
                    "state": _text(record, "state", "running"),
                    "prompt": _text(record, "prompt"),
                    "created_at": _number(record, "created_at"),
                    "finished_at": _number(record, "finished_at"),
                    "events": int(_number(record, "events") or 0),
                    "watchers": None,
                    "error": _text(record, "error") or None,
                    "owner": _text(record, "owner") or None,
                }
            )
        if gone:
            self._spawn(self._zrem(gone))
        return out

    async def send_cancel(self, fanout_id: str, agent_id: str | None, reason: CancelReason) -> None:
        """Queue a cancel command for the fan-out's owner, wherever it runs, and announce it."""
        owned = self._owned.get(fanout_id)
        if owned is not None:
            owned.entry.cancel(agent_id, reason)
            return
        command = orjson.dumps({"agent_id": agent_id, "reason": reason})
        for attempt in range(5):
            try:
                pipe = self._r.pipeline(transaction=True)
                pipe.rpush(self.keys.cmds(fanout_id), command)
                pipe.pexpire(self.keys.cmds(fanout_id), self._running_ttl_ms())
                pipe.publish(self.keys.ctl(fanout_id), b"1")
                await pipe.execute()
                return
            except RedisError as exc:
                self._failed(exc)
                await anyio.sleep(min(0.1 * 2**attempt, 2.0))
        logger.error("cancel of fan-out %s could not reach Redis", fanout_id)

    # -- readers across replicas (SharedState) -----------------------------------------------

    def reader_joined(self, entry: HubFanOut) -> None:
        self._spawn(self._count_reader(entry.fanout_id, 1))

    def reader_left(self, entry: HubFanOut, *, early: bool, joined: bool = True) -> None:
        self._spawn(self._reader_left(entry, early=early, joined=joined))

    async def _count_reader(self, fanout_id: str, delta: int) -> None:
        key = self.keys.readers(fanout_id)
        try:
            pipe = self._r.pipeline(transaction=False)
            pipe.hincrby(key, self.replica_id, delta)
            pipe.pexpire(key, self._running_ttl_ms())
            await pipe.execute()
        except RedisError as exc:
            self._failed(exc)

    async def _reader_left(self, entry: HubFanOut, *, early: bool, joined: bool) -> None:
        if joined:
            await self._count_reader(entry.fanout_id, -1)
        if not early or entry.on_disconnect != "cancel" or not entry.running:
            return
        # A reader dropped by a replica that shuts down (or by a network blip) reconnects,
        # maybe elsewhere: give it that long before it counts as gone.
        await anyio.sleep(self.disconnect_grace_s)
        if entry._watchers or not entry.running:
            return
        try:
            counts = await self._r.hgetall(self.keys.readers(entry.fanout_id))
            others = {k.decode(): int(v) for k, v in counts.items() if int(v) > 0}
            others.pop(self.replica_id, None)
            alive = 0
            if others:
                pipe = self._r.pipeline(transaction=False)
                for replica in others:
                    pipe.exists(self.keys.replica(replica))
                for replica, exists in zip(others, await pipe.execute(), strict=True):
                    if exists:
                        alive += others[replica]
        except RedisError as exc:
            self._failed(exc)
            return
        if alive == 0 and entry._watchers == 0 and entry.running:
            logger.info("fan-out %s: last reader anywhere left, cancelling", entry.fanout_id)
            await self.send_cancel(entry.fanout_id, None, "disconnect")

    # -- owning: publish, renew, obey --------------------------------------------------------

    def _own(self, entry: HubFanOut, locks: list[str], *, after: int) -> None:
        entry._shared = self
        owned = self._owned[entry.fanout_id] = _Owned(entry, locks)
        sub = entry.log.subscribe(after)
        self._tg.start_soon(self._publish, owned, sub, name=f"hub:publish:{entry.fanout_id}")

    async def _publish(self, owned: _Owned, sub: LogSubscription) -> None:
        """Copy the owned fan-out's log to its Redis Stream, a pipeline per ready batch."""
        entry = owned.entry
        try:
            with owned.scope:
                async with sub:
                    async for first in sub:
                        batch = [first, *sub.read_ready(_BATCH - 1)]
                        if owned.stop_at is not None:
                            batch = [e for e in batch if e.index < owned.stop_at]
                        if batch and not await self._flush(owned, batch):
                            return
                        if owned.stop_at is not None and sub.next_index >= owned.stop_at:
                            await self._let_go(owned)
                            return
                    await entry.wait()
                    await self._finish(owned)
        finally:
            self._owned.pop(entry.fanout_id, None)
            owned.published.set()

    async def _flush(self, owned: _Owned, batch: list[Event]) -> bool:
        """XADD ``batch``; retries until Redis takes it. False when another owner wrote."""
        fanout_id = owned.entry.fanout_id
        key = self.keys.events(fanout_id)
        delay = 0.05
        unsure = False
        while True:
            try:
                if unsure:
                    # An earlier attempt may have written part of the batch.
                    last = await self._last_index(fanout_id)
                    batch = [event for event in batch if event.index > last]
                    if not batch:
                        return True
                pipe = self._r.pipeline(transaction=False)
                for event in batch:
                    pipe.xadd(
                        key,
                        {"e": event.to_json()},
                        id=_entry_id(event.index),
                        maxlen=self.max_events,
                        approximate=True,
                    )
                ttl = self._running_ttl_ms()
                pipe.pexpire(key, ttl)
                pipe.hset(self.keys.registry(fanout_id), "events", batch[-1].index + 1)
                await pipe.execute()
                return True
            except ResponseError as exc:
                if "equal or smaller" not in str(exc):
                    raise
                if not unsure:
                    unsure = True
                    continue
                # Ours were all written, or someone else owns the fan-out now.
                owned.fenced = not await self._still_owner(fanout_id)
                if owned.fenced:
                    logger.error("fan-out %s: another replica took it over", fanout_id)
                    return False
            except RedisError as exc:
                self._failed(exc)
                unsure = True
                await anyio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _last_index(self, fanout_id: str) -> int:
        last = await self._r.xrevrange(self.keys.events(fanout_id), count=1)
        return _index_of(last[0][0]) if last else -1

    async def _still_owner(self, fanout_id: str) -> bool:
        holder = await self._r.get(self.keys.lease(fanout_id))
        return holder is not None and holder.decode() == self.replica_id

    async def _finish(self, owned: _Owned) -> None:
        """The fan-out ended: record it, let its keys expire, give back its locks."""
        entry = owned.entry
        fanout_id = entry.fanout_id
        retention_ms = int(self.retention_s * 1000)
        delay = 0.05
        while not owned.fenced:
            try:
                pipe = self._r.pipeline(transaction=False)
                pipe.hset(
                    self.keys.registry(fanout_id),
                    mapping={
                        "state": "finished",
                        "finished_at": entry.finished_at or time.time(),
                        "error": entry.error or "",
                        "events": entry.log.next_index,
                    },
                )
                pipe.srem(self.keys.running, fanout_id)
                for key in (
                    self.keys.registry(fanout_id),
                    self.keys.events(fanout_id),
                    self.keys.cmds(fanout_id),
                    self.keys.readers(fanout_id),
                ):
                    pipe.pexpire(key, retention_ms)
                await pipe.execute()
                await self._forget_locks(fanout_id, owned.locks)
                await self._release(keys=[self.keys.lease(fanout_id)], args=[self.replica_id])
                return
            except RedisError as exc:
                self._failed(exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def hand_over(self) -> int:
        """Give this replica's running fan-outs to the other replicas (when shutting down).

        Only when Redis works and another replica is alive: each fan-out stops here without
        cancelling its runs upstream (:meth:`FanOut.detach`), what it logged so far is
        published, and its lease is released so another replica takes it over at once and
        continues the runs. Returns how many fan-outs were handed over; the rest are
        cancelled by the shutdown as with the in-memory hub.
        """
        if not self.ok:
            return 0
        try:
            others = [
                key
                async for key in self._r.scan_iter(match=self.keys.replica("*"), count=100)
                if key.decode() != self.keys.replica(self.replica_id)
            ]
        except RedisError as exc:
            self._failed(exc)
            return 0
        if not others:
            return 0
        handed = 0
        for owned in list(self._owned.values()):
            fanout = owned.entry._fanout
            if fanout is None or not owned.entry.running or owned.fenced:
                continue
            # No await between the two: every event logged before the detach is published,
            # none after (those are this replica's own view of the shutdown).
            owned.stop_at = owned.entry.log.next_index
            fanout.detach()
            handed += 1
        if handed:
            logger.warning("shutting down: handed %d fan-out(s) over to the other replicas", handed)
        return handed

    async def _let_go(self, owned: _Owned) -> None:
        # Published up to the hand-over point: release the lease (the conversation locks
        # keep theirs until the next owner renews them) so a scanner takes it over now.
        fanout_id = owned.entry.fanout_id
        try:
            await self._r.hset(self.keys.registry(fanout_id), "owner", "")
            await self._release(keys=[self.keys.lease(fanout_id)], args=[self.replica_id])
        except RedisError as exc:
            self._failed(exc)  # the lease then simply runs out

    async def _heartbeat(self) -> None:
        """Renew this replica's leases and locks; drain commands; watch Redis' health."""
        interval = self.lease_s / 3
        lease_ms = int(self.lease_s * 1000)
        while True:
            try:
                await self._r.ping()
                pipe = self._r.pipeline(transaction=False)
                pipe.set(self.keys.replica(self.replica_id), b"1", px=lease_ms)
                owned = [o for o in self._owned.values() if not o.fenced]
                for o in owned:
                    # Queued in the pipeline (the call itself only adds the command).
                    await self._renew(
                        keys=[self.keys.lease(o.entry.fanout_id)],
                        args=[self.replica_id, lease_ms],
                        client=pipe,
                    )
                    for lock in o.locks:
                        await self._renew(
                            keys=[self.keys.conversation(lock)],
                            args=[o.entry.fanout_id, lease_ms],
                            client=pipe,
                        )
                results = await pipe.execute()
                self._healthy()
                position = 1
                for o in owned:
                    if not results[position]:
                        await self._relet(o)
                    position += 1 + len(o.locks)
                for o in owned:
                    await self._drain(o.entry.fanout_id)
            except RedisError as exc:
                self._failed(exc)
            await anyio.sleep(interval)

    async def _relet(self, owned: _Owned) -> None:
        # The lease ran out (Redis was away longer than the lease): take it again, unless
        # another replica took the fan-out over meanwhile.
        fanout_id = owned.entry.fanout_id
        if owned.stop_at is not None or fanout_id not in self._owned:
            return  # being handed over: the lease was given up on purpose
        lease_ms = int(self.lease_s * 1000)
        if await self._r.set(
            self.keys.lease(fanout_id), self.replica_id, nx=True, px=lease_ms
        ) or await self._still_owner(fanout_id):
            return
        owned.fenced = True
        owned.scope.cancel()
        logger.error("fan-out %s: lost its lease to another replica", fanout_id)

    async def _drain(self, fanout_id: str) -> None:
        """Apply the queued cancel commands of an owned fan-out."""
        owned = self._owned.get(fanout_id)
        if owned is None:
            return
        pipe = self._r.pipeline(transaction=True)
        pipe.lrange(self.keys.cmds(fanout_id), 0, -1)
        pipe.delete(self.keys.cmds(fanout_id))
        commands, _ = await pipe.execute()
        for raw in commands:
            try:
                command = orjson.loads(raw)
                owned.entry.cancel(command.get("agent_id"), command.get("reason") or "user")
            except (orjson.JSONDecodeError, UnknownAgentError, AttributeError) as exc:
                logger.warning("fan-out %s: ignored command %r: %s", fanout_id, raw, exc)

    async def _listen(self) -> None:
        """Drain an owned fan-out's commands as soon as its channel announces one."""
        delay = 0.1
        while True:
            pubsub = self._r.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(self.keys.ctl_pattern)
                delay = 0.1
                while True:
                    message = await pubsub.get_message(timeout=self.block_ms / 1000)
                    if message is None:
                        continue
                    channel = message["channel"]
                    fanout_id = self.keys.fanout_of_ctl(
                        channel.decode() if isinstance(channel, bytes) else channel
                    )
                    if fanout_id is not None and fanout_id in self._owned:
                        await self._drain(fanout_id)
            except RedisError as exc:
                self._failed(exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                    await pubsub.aclose()

    # -- reading other replicas' fan-outs ----------------------------------------------------

    async def _follow(self, mirror: MirrorFanOut) -> None:
        """Copy a fan-out's Stream into the mirror's log until ``fanout_done``."""
        key = self.keys.events(mirror.fanout_id)
        log = mirror.log
        delay = 0.05
        try:
            while True:
                try:
                    reply = await self._r.xread(
                        {key: _entry_id(log.next_index - 1)},
                        count=_SCAN_PAGE,
                        block=self.block_ms,
                    )
                    delay = 0.05
                except RedisError as exc:
                    self._failed(exc)
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                if not reply:
                    if await self._ended_without_events(mirror):
                        return
                    continue
                for entry_id, fields in reply[0][1]:
                    index = _index_of(entry_id)
                    if index != log.next_index:
                        mirror.error = (
                            f"this replica fell behind the log: event {log.next_index} is no "
                            f"longer retained (next retained: {index})"
                        )
                        return
                    event = _decode(fields)
                    await log.append(event)
                    if event.type == "fanout_done":
                        return
        finally:
            self._ended(mirror)

    def _ended(self, mirror: MirrorFanOut) -> None:
        mirror.log.close()
        mirror.finished_at = mirror.finished_at or time.time()
        mirror._done.set()
        self._ended_at.setdefault(mirror.fanout_id, self._clock())

    async def _ended_without_events(self, mirror: MirrorFanOut) -> bool:
        # No event for a while: the fan-out may have ended without fanout_done (it failed),
        # or expired.
        try:
            record = await self._r.hgetall(self.keys.registry(mirror.fanout_id))
            last = await self._last_index(mirror.fanout_id)
        except RedisError as exc:
            self._failed(exc)
            return False
        if not record:
            mirror.error = mirror.error or "the fan-out expired"
            return True
        if _text(record, "state") == "finished" and last < mirror.log.next_index:
            mirror.error = _text(record, "error") or None
            mirror.finished_at = _number(record, "finished_at")
            return True
        mirror.owner = _text(record, "owner") or None
        return False

    # -- taking over a dead replica's fan-outs -----------------------------------------------

    async def _scan(self) -> None:
        """Take over every running fan-out whose owner's lease ran out."""
        interval = min(0.5, self.lease_s / 4)
        lease_ms = int(self.lease_s * 1000)
        while True:
            await anyio.sleep(interval)
            try:
                running = [i.decode() for i in await self._r.smembers(self.keys.running)]
                candidates = [i for i in running if i not in self._owned]
                if not candidates:
                    continue
                pipe = self._r.pipeline(transaction=False)
                for fanout_id in candidates:
                    pipe.exists(self.keys.lease(fanout_id))
                leased = await pipe.execute()
                for fanout_id, exists in zip(candidates, leased, strict=True):
                    if exists or fanout_id in self._owned:
                        continue
                    if await self._r.set(
                        self.keys.lease(fanout_id), self.replica_id, nx=True, px=lease_ms
                    ):
                        await self._take_over(fanout_id)
            except RedisError as exc:
                self._failed(exc)

    async def _take_over(self, fanout_id: str) -> None:
        record = await self._r.hgetall(self.keys.registry(fanout_id))
        if not record:
            await self._r.srem(self.keys.running, fanout_id)
            return
        events = await self._read_all(fanout_id)
        self.takeovers += 1
        logger.warning(
            "taking over fan-out %s from replica %s (%d events logged)",
            fanout_id,
            _text(record, "owner") or "?",
            len(events),
        )
        agents: dict[str, str] = dict(orjson.loads(record.get(b"agents", b"{}")))
        first_index = events[0].index if events else 0
        entry = _TakenOver(
            fanout_id,
            [],
            _text(record, "prompt"),
            FanOutOptions(**orjson.loads(record.get(b"options", b"{}"))),
            "continue" if _text(record, "on_disconnect") == "continue" else "cancel",
            max(self.max_events, len(events) + 1),
        )
        entry.agents = agents
        entry.created_at = _number(record, "created_at") or time.time()
        entry.log = EventLog(entry.log.max_events, first_index=first_index)
        for event in events:
            await entry.log.append(event)
        locks = [k for k in orjson.loads(record.get(b"locks", b"[]")) if isinstance(k, str)]
        pipe = self._r.pipeline(transaction=False)
        pipe.hset(self.keys.registry(fanout_id), "owner", self.replica_id)
        for lock in locks:
            pipe.set(self.keys.conversation(lock), fanout_id, px=int(self.lease_s * 1000))
        await pipe.execute()
        if fanout_id not in self._fanouts:
            self._fanouts[fanout_id] = entry
        self._own(entry, locks, after=entry.log.next_index - 1)
        for hook in self._takeover_hooks:
            try:
                await hook(fanout_id, events)
            except Exception:
                logger.exception("takeover hook %r failed for fan-out %s", hook, fanout_id)
        await self._drain(fanout_id)
        self._tg.start_soon(self._continue, entry, record, events, name=f"hub:takeover:{fanout_id}")

    async def _read_all(self, fanout_id: str) -> list[Event]:
        key = self.keys.events(fanout_id)
        events: list[Event] = []
        start = "-"
        while True:
            page = await self._r.xrange(key, min=start, max="+", count=_SCAN_PAGE)
            events.extend(_decode(fields) for _, fields in page)
            if len(page) < _SCAN_PAGE:
                return events
            start = "(" + page[-1][0].decode()

    async def _continue(
        self, entry: _TakenOver, record: Mapping[bytes, bytes], events: list[Event]
    ) -> None:
        """Run what is left of a taken-over fan-out and append it to the log, seamlessly."""
        try:
            await self._stitch(entry, record, events)
        except Exception as exc:
            logger.exception("takeover of fan-out %s failed", entry.fanout_id)
            entry.error = f"{type(exc).__name__}: {exc}"
        finally:
            entry.log.close()
            entry.finished_at = time.time()
            entry._done.set()
            self._ended_at[entry.fanout_id] = self._clock()

    async def _stitch(
        self, entry: _TakenOver, record: Mapping[bytes, bytes], events: list[Event]
    ) -> None:
        fanout_id = entry.fanout_id
        log = entry.log
        folds = fold_agents(entry.agents, events)
        t_base = events[-1].t if events else 0.0
        if events and events[-1].type == "fanout_done":
            return
        if log.next_index == 0:
            info = orjson.loads(record.get(b"agents_info", b"[]"))
            await self._append(
                entry,
                Event(
                    "fanout_start",
                    fanout_id,
                    None,
                    None,
                    0,
                    0,
                    0.0,
                    {"prompt": entry.prompt, "agents": info, "options": entry.options.to_dict()},
                ),
            )
        specs: dict[str, Any] = orjson.loads(record.get(b"specs", b"{}"))
        need = parse_policy(entry.options.policy)
        succeeded = sum(1 for f in folds.values() if f.state == "done")
        sources: list[Source] = []
        for agent_id, fold in folds.items():
            if fold.finished:
                continue
            if need is not None and succeeded >= need:
                await self._end_agent(
                    entry, folds, agent_id, "agent_cancelled", {"reason": "policy"}
                )
                continue
            source = await self._revive(agent_id, fold, specs.get(agent_id))
            if source is None:
                await self._end_agent(
                    entry,
                    folds,
                    agent_id,
                    "agent_error",
                    {
                        "code": "replica_lost",
                        "message": "the replica running this agent stopped, and its run "
                        "could not be continued",
                        "retryable": True,
                    },
                )
                continue
            sources.append(source)
        t_inner = 0.0
        if sources:
            inner_policy = "all" if need is None else f"quorum:{need - succeeded}"
            options = FanOutOptions(**{**entry.options.to_dict(), "policy": inner_policy})
            async with open_fanout(sources, entry.prompt, options, fanout_id=fanout_id) as inner:
                entry._fanout = inner
                for pending, reason in entry._pending:
                    if pending is None or pending in inner.agent_ids:
                        inner.cancel(pending, reason)
                entry._pending.clear()
                async for event in inner:
                    t_inner = event.t
                    if event.type in ("fanout_start", "fanout_done") or event.agent_id is None:
                        continue
                    fold = folds[event.agent_id]
                    if event.type == "agent_start" and fold.started:
                        continue
                    await self._append(
                        entry,
                        Event(
                            event.type,
                            fanout_id,
                            event.agent_id,
                            event.label,
                            fold.seq + 1,
                            log.next_index,
                            t_base + event.t,
                            event.data,
                        ),
                        fold,
                    )
        now_t = t_base + t_inner
        await self._append(
            entry,
            Event(
                "fanout_done",
                fanout_id,
                None,
                None,
                0,
                log.next_index,
                now_t,
                done_data(folds, now_t),
            ),
        )

    async def _revive(self, agent_id: str, fold: AgentFold, spec: Any) -> Source | None:
        if self.revive is None or not isinstance(spec, dict):
            return None
        checkpoint = Checkpoint(
            agent_id=agent_id,
            label=fold.label,
            spec=spec,
            run_id=fold.run_id,
            cursor=fold.cursor,
            started=fold.started,
        )
        try:
            return await self.revive(checkpoint)
        except Exception:
            logger.exception("could not revive agent %s", agent_id)
            return None

    async def _end_agent(
        self,
        entry: HubFanOut,
        folds: Mapping[str, AgentFold],
        agent_id: str,
        etype: Any,
        data: JSON,
    ) -> None:
        fold = folds[agent_id]
        last = entry.log.last()
        t = last.t if last is not None else 0.0
        await self._append(
            entry,
            Event(
                etype,
                entry.fanout_id,
                agent_id,
                fold.label,
                fold.seq + 1,
                entry.log.next_index,
                t,
                data,
            ),
            fold,
        )

    async def _append(self, entry: HubFanOut, event: Event, fold: AgentFold | None = None) -> None:
        if fold is not None:
            fold.add(event)
        await entry.log.append(event)
        for observe in self._observers:
            observe(event)

    # -- bookkeeping -------------------------------------------------------------------------

    async def _lock_conversations(
        self, fanout_id: str, sources: Sequence[Source], keys: list[str]
    ) -> None:
        if not keys:
            return
        busy = await self._lock_all(
            keys=[self.keys.conversation(k) for k in keys],
            args=[fanout_id, int(self.lease_s * 1000)],
        )
        if not busy:
            return
        by_key = {getattr(s, "conversation_key", None): s.agent_id for s in sources}
        agents: list[str] = []
        reasons: list[str] = []
        for position in range(0, len(busy), 2):
            key = keys[int(busy[position])]
            holder = busy[position + 1]
            holder = holder.decode() if isinstance(holder, bytes) else str(holder)
            agent = by_key.get(key, key)
            agents.append(agent)
            reasons.append(f"{agent} (conversation {key} is running in {holder})")
        raise ConversationBusyError(
            "a conversation can run one request at a time; busy: " + "; ".join(reasons),
            agents=agents,
        )

    async def _forget_locks(self, fanout_id: str, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                await self._release(keys=[self.keys.conversation(key)], args=[fanout_id])
            except RedisError as exc:
                self._failed(exc)

    async def _register(
        self,
        fanout_id: str,
        sources: Sequence[Source],
        prompt: str,
        options: FanOutOptions,
        on_disconnect: OnDisconnect,
    ) -> None:
        now = time.time()
        specs = {s.agent_id: _spec(s) for s in sources}
        info = [
            {**dict(getattr(s, "info", None) or {}), "agent_id": s.agent_id, "label": s.label}
            for s in sources
        ]
        ttl = self._running_ttl_ms()
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(
            self.keys.registry(fanout_id),
            mapping={
                "fanout_id": fanout_id,
                "state": "running",
                "owner": self.replica_id,
                "prompt": prompt,
                "created_at": now,
                "on_disconnect": on_disconnect,
                "options": orjson.dumps(options.to_dict()),
                "agents": orjson.dumps({s.agent_id: s.label for s in sources}),
                "agents_info": orjson.dumps(info, default=str),
                "specs": orjson.dumps(specs, default=str),
                "locks": orjson.dumps(_conversation_keys(sources)),
                "events": 0,
            },
        )
        pipe.pexpire(self.keys.registry(fanout_id), ttl)
        pipe.set(self.keys.lease(fanout_id), self.replica_id, px=int(self.lease_s * 1000))
        pipe.sadd(self.keys.running, fanout_id)
        pipe.zadd(self.keys.index, {fanout_id: now})
        pipe.zremrangebyscore(self.keys.index, "-inf", now - self.retention_s - 86_400)
        await pipe.execute()

    async def _zrem(self, ids: list[str]) -> None:
        try:
            await self._r.zrem(self.keys.index, *ids)
        except RedisError as exc:
            self._failed(exc)

    def _running_ttl_ms(self) -> int:
        # While running, keys outlive any retention; at the end they get exactly that.
        return int((self.retention_s + 86_400) * 1000)

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        self._tg.start_soon(run)

    def _unavailable(self, exc: BaseException) -> HubUnavailableError:
        self._failed(exc)
        return HubUnavailableError(f"Redis at {self.url} is unreachable ({self.last_error})")

    def _failed(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if self.ok:
            logger.error("Redis at %s failed: %s", self.url, message)
        self.ok = False
        self.last_error = message

    def _healthy(self) -> None:
        if not self.ok:
            logger.info("Redis at %s is reachable", self.url)
        self.ok = True
        self.last_error = None


def _conversation_keys(sources: Sequence[Source]) -> list[str]:
    return [k for s in sources if (k := getattr(s, "conversation_key", None)) is not None]


def _spec(source: Source) -> Any:
    resume_spec = getattr(source, "resume_spec", None)
    if resume_spec is None:
        return None
    try:
        spec = resume_spec()
    except Exception:
        logger.exception("resume_spec() of %s failed", source.agent_id)
        return None
    return dict(spec) if spec is not None else None


def default_replica_id() -> str:
    """``<host>-<pid>-<random>``: unique per process, readable in logs."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@asynccontextmanager
async def open_redis_hub(
    url: str,
    *,
    lease_s: float = 5.0,
    replica_id: str | None = None,
    prefix: str = "orchestrator:",
    revive: Reviver | None = None,
    block_ms: int = 1000,
    max_connections: int = 64,
    disconnect_grace_s: float = 2.0,
    max_active: int = 32,
    retention_s: float = 600.0,
    max_events: int = 10_000,
    max_retained: int = 1_000,
    retry_after_s: float = 2.0,
    shutdown_timeout_s: float = 5.0,
) -> AsyncIterator[RedisFanOutHub]:
    """Run a :class:`RedisFanOutHub` on the Redis at ``url`` for the duration of the block.

    ``lease_s`` is how long a dead owner's fan-outs wait before another replica takes them
    over (renewed every third of it). ``revive`` rebuilds a dead owner's sources (the HTTP
    API passes its directory's ``revive``); without it, their unfinished agents end with
    ``agent_error`` ``replica_lost``. ``block_ms`` bounds each ``XREAD BLOCK``; the client's
    socket timeout is set above it. At most ``max_connections`` connections are open (a
    blocking pool: a request waits for a free one). With ``on_disconnect: cancel``, a
    fan-out is cancelled when no streaming reader is left on any live replica for
    ``disconnect_grace_s`` (a reader may reconnect elsewhere meanwhile). Leaving the block
    hands the running fan-outs to the other replicas when any is alive
    (:meth:`RedisFanOutHub.hand_over`), else cancels them. The other settings are
    :func:`open_hub`'s. Redis need not be up: the hub starts unhealthy and refuses new
    fan-outs until it is. Raises :class:`ConfigError` for a bad setting or a missing
    ``redis`` extra.
    """
    if aioredis is None:
        raise ConfigError(
            "the Redis hub needs the 'redis' extra: pip install 'letta-fanout[redis]'"
        )
    for name, value, low in (
        ("lease_s", lease_s, 0.0),
        ("block_ms", block_ms, 0.0),
        ("max_connections", max_connections, 3.0),
        ("disconnect_grace_s", disconnect_grace_s, -1e-9),
    ):
        if value <= low:
            bound = "> 0" if low == 0 else ">= 4" if low == 3 else ">= 0"
            raise ConfigError(f"{name} must be {bound}, got {value!r}")
    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=10,
            # A blocked XREAD must not look like a dead socket.
            socket_timeout=block_ms / 1000 + 5,
            socket_connect_timeout=2,
            health_check_interval=30,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from None
    client = aioredis.Redis(connection_pool=pool)
    try:
        async with anyio.create_task_group() as tg:
            hub = RedisFanOutHub(
                tg,
                client,
                url=url,
                lease_s=lease_s,
                replica_id=replica_id or default_replica_id(),
                prefix=prefix,
                revive=revive,
                block_ms=block_ms,
                disconnect_grace_s=disconnect_grace_s,
                max_active=max_active,
                retention_s=retention_s,
                max_events=max_events,
                max_retained=max_retained,
                retry_after_s=retry_after_s,
            )
            try:
                await client.ping()
                hub._healthy()
            except RedisError as exc:
                hub._failed(exc)
            tg.start_soon(hub._reap_forever, min(hub.retention_s / 4, 30.0), name="hub:reaper")
            tg.start_soon(hub._heartbeat, name="hub:heartbeat")
            tg.start_soon(hub._listen, name="hub:listen")
            tg.start_soon(hub._scan, name="hub:scan")
            try:
                yield hub
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(shutdown_timeout_s):
                    await hub.hand_over()
                hub.cancel_all()
                with anyio.CancelScope(shield=True), anyio.move_on_after(shutdown_timeout_s):
                    for entry in list(hub._fanouts.values()):
                        if not isinstance(entry, MirrorFanOut):
                            await entry.wait()
                    # Let the publishers record the ends.
                    for owned in list(hub._owned.values()):
                        await owned.published.wait()
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
            await pool.aclose()
