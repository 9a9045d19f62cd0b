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
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
from anyio.abc import TaskGroup

from .._core._exceptions import (
    ConfigError,
    ConversationBusyError,
    UnknownFanOutError,
)
from .._core._options import FanOutOptions
from .._core._source import Source
from .._core._types import JSON
from ._hub import HubFanOut, OnDisconnect
from ._log import EventLog
from ._owner import Owner
from ._redis_base import RedisHubBase
from ._redis_entries import MirrorFanOut
from ._redis_wire import (
    SCAN_PAGE,
    RedisError,
    Reviver,
    decode_event,
    entry_id,
    index_of,
    number_field,
    redact_url,
    text_field,
)
from ._takeover import Takeover

try:  # the ``redis`` extra (checked by open_redis_hub)
    import redis.asyncio as aioredis
except ImportError:  # pragma: no cover - exercised by the lean-install test
    aioredis = None  # type: ignore[assignment]

logger = logging.getLogger("orchestrator.hub.redis")


class RedisFanOutHub(RedisHubBase):
    """A :class:`FanOutHub` whose fan-outs every replica sharing the Redis can serve.

    Obtain one from :func:`open_redis_hub`. The in-memory hub's methods keep their meaning
    for the fan-outs this replica owns; :meth:`submit`, :meth:`find` and :meth:`listing` are
    the ones that reach every replica's fan-outs (the HTTP API uses only those). ``active``
    and ``max_active`` count this replica's own fan-outs.
    """

    def __init__(self, tg: TaskGroup, client: Any, **settings: Any) -> None:
        super().__init__(tg, client, **settings)
        self._owner = Owner(self)
        self._takeover = Takeover(self, self._owner)

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
        keys = conversation_keys(sources)
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
        self._owner.own(entry, keys, after=-1)
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
            events, broken = await self._read_all(fanout_id)
        except RedisError as exc:
            raise self._unavailable(exc) from None
        entry = self._fanouts.get(fanout_id)  # found by another request meanwhile
        if entry is not None:
            return entry
        try:
            mirror = MirrorFanOut(self, fanout_id, record, self.max_events)
        except (ValueError, TypeError) as exc:  # a registry entry written by something else
            raise UnknownFanOutError(
                f"fan-out {fanout_id!r} cannot be read from Redis: its registry entry is "
                f"not one this hub wrote ({exc})"
            ) from None
        mirror.log = EventLog(self.max_events, first_index=events[0].index if events else 0)
        for event in events:
            if event.index != mirror.log.next_index:
                broken = f"event {event.index} in Redis follows {mirror.log.next_index - 1}"
                break
            await mirror.log.append(event)  # nobody reads it yet: never waits
        self._fanouts[fanout_id] = mirror
        if broken is not None:
            mirror.error = broken
            logger.error("fan-out %s: %s", fanout_id, broken)
            self._ended(mirror)
        elif events and events[-1].type == "fanout_done":
            self._ended(mirror)
        else:
            self._tg.start_soon(self._follow, mirror, name=f"hub:follow:{fanout_id}")
        return mirror

    async def remember(self, key: str, value: str, *, keep_existing: bool = False) -> str:
        """Keep a note every replica can :meth:`recall`, in Redis, for ``retention_s``;
        returns the note now kept (with ``keep_existing`` the first replica's wins).

        Raises :class:`HubUnavailableError` when Redis cannot be reached.
        """
        ttl = int(self.retention_s * 1000)
        try:
            if await self._r.set(self.keys.note(key), value, px=ttl, nx=keep_existing):
                return value
            kept = await self._r.get(self.keys.note(key))
        except RedisError as exc:
            raise self._unavailable(exc) from None
        return kept.decode() if kept is not None else value

    async def recall(self, key: str) -> str | None:
        """The note kept under ``key`` by any replica, if any (``HubUnavailableError`` when
        Redis cannot be reached)."""
        try:
            value = await self._r.get(self.keys.note(key))
        except RedisError as exc:
            raise self._unavailable(exc) from None
        return value.decode() if value is not None else None

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
                    "state": text_field(record, "state", "running"),
                    "prompt": text_field(record, "prompt"),
                    "created_at": number_field(record, "created_at"),
                    "finished_at": number_field(record, "finished_at"),
                    "events": int(number_field(record, "events") or 0),
                    "watchers": None,
                    "error": text_field(record, "error") or None,
                    "owner": text_field(record, "owner") or None,
                }
            )
        if gone:
            self._spawn(self._zrem(gone))
        return out

    async def hand_over(self) -> int:
        """Give this replica's running fan-outs to the other replicas (see
        :meth:`Owner.hand_over`); returns how many. Leaving :func:`open_redis_hub` does it."""
        return await self._owner.hand_over()

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
                        {key: entry_id(log.next_index - 1)},
                        count=SCAN_PAGE,
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
                for raw_id, fields in reply[0][1]:
                    index = index_of(raw_id)
                    if index != log.next_index:
                        mirror.error = (
                            f"this replica fell behind the log: event {log.next_index} is no "
                            f"longer retained (next retained: {index})"
                        )
                        return
                    try:
                        event = decode_event(fields)
                    except (ValueError, KeyError) as exc:  # EventFormatError, bad JSON
                        mirror.error = f"event {index} in Redis is not a valid event: {exc}"
                        logger.error("fan-out %s: %s", mirror.fanout_id, mirror.error)
                        return
                    await log.append(event)
                    if event.type == "fanout_done":
                        return
        finally:
            self._ended(mirror)

    def _ended(self, mirror: MirrorFanOut) -> None:
        mirror._end()
        self._ended_at.setdefault(mirror.fanout_id, self._clock())

    async def _ended_without_events(self, mirror: MirrorFanOut) -> bool:
        # No event for a while: the fan-out may have ended without fanout_done (it failed),
        # or expired.
        try:
            record = await self._r.hgetall(self.keys.registry(mirror.fanout_id))
            last = await self._owner.last_index(mirror.fanout_id)
        except RedisError as exc:
            self._failed(exc)
            return False
        if not record:
            mirror.error = mirror.error or "the fan-out expired"
            return True
        if text_field(record, "state") == "finished" and last < mirror.log.next_index:
            mirror.error = text_field(record, "error") or None
            mirror.finished_at = number_field(record, "finished_at")
            return True
        mirror.owner = text_field(record, "owner") or None
        return False

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

    async def _register(
        self,
        fanout_id: str,
        sources: Sequence[Source],
        prompt: str,
        options: FanOutOptions,
        on_disconnect: OnDisconnect,
    ) -> None:
        now = time.time()
        specs = {s.agent_id: resume_spec_of(s) for s in sources}
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
                "locks": orjson.dumps(conversation_keys(sources)),
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


def conversation_keys(sources: Sequence[Source]) -> list[str]:
    return [k for s in sources if (k := getattr(s, "conversation_key", None)) is not None]


def resume_spec_of(source: Source) -> Any:
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
    for name, value, valid, bound in (
        ("lease_s", lease_s, lease_s > 0, "> 0"),
        ("block_ms", block_ms, block_ms > 0, "> 0"),
        ("max_connections", max_connections, max_connections >= 4, ">= 4"),
        ("disconnect_grace_s", disconnect_grace_s, disconnect_grace_s >= 0, ">= 0"),
    ):
        if not valid:
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
            tg.start_soon(hub._owner.heartbeat, name="hub:heartbeat")
            tg.start_soon(hub._owner.listen, name="hub:listen")
            tg.start_soon(hub._takeover.scan, name="hub:scan")
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
