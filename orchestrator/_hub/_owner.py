"""Owning fan-outs in the Redis hub: publishing, leases, cancel commands, hand-over."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio
import orjson

from .._core._events import Event
from .._core._exceptions import (
    UnknownAgentError,
)
from .._core._types import CANCEL_REASONS
from ._hub import HubFanOut
from ._log import LogSubscription
from ._redis_entries import Owned
from ._redis_wire import (
    BATCH,
    RedisError,
    ResponseError,
    entry_id,
    index_of,
)

if TYPE_CHECKING:
    from ._redis_base import RedisHubBase

logger = logging.getLogger("orchestrator.hub.redis")


class Owner:
    """The owner's side of the Redis hub: publish owned logs, renew leases, obey commands.

    One per :class:`RedisFanOutHub`; the fan-outs it owns are ``hub._owned``.
    """

    def __init__(self, hub: RedisHubBase) -> None:
        self.hub = hub

    # -- owning: publish, renew, obey --------------------------------------------------------

    def own(self, entry: HubFanOut, locks: list[str], *, after: int) -> None:
        entry._shared = self.hub
        owned = self.hub._owned[entry.fanout_id] = Owned(entry, locks)
        sub = entry.log.subscribe(after)
        self.hub._tg.start_soon(self.publish, owned, sub, name=f"hub:publish:{entry.fanout_id}")

    async def publish(self, owned: Owned, sub: LogSubscription) -> None:
        """Copy the owned fan-out's log to its Redis Stream, a pipeline per ready batch."""
        entry = owned.entry
        try:
            with owned.scope:
                async with sub:
                    async for first in sub:
                        batch = [first, *sub.read_ready(BATCH - 1)]
                        if owned.stop_at is not None:
                            batch = [e for e in batch if e.index < owned.stop_at]
                        if batch and not await self.flush(owned, batch):
                            return
                        if owned.stop_at is not None and sub.next_index >= owned.stop_at:
                            await self.let_go(owned)
                            return
                    await entry.wait()
                    await self.finish(owned)
        finally:
            self.hub._owned.pop(entry.fanout_id, None)
            owned.published.set()

    async def flush(self, owned: Owned, batch: list[Event]) -> bool:
        """Append ``batch`` to the Stream (one script call); retries until Redis takes it.

        Returns False when another replica owns the fan-out now (its entries are there).
        """
        fanout_id = owned.entry.fanout_id
        key = self.hub.keys.events(fanout_id)
        delay = 0.05
        unsure = False
        while True:
            try:
                if unsure:
                    # An earlier attempt may have written part of the batch.
                    last = await self.last_index(fanout_id)
                    batch = [event for event in batch if event.index > last]
                    if not batch:
                        return True
                args: list[str | int] = [
                    self.hub.max_events,
                    self.hub._running_ttl_ms(),
                    batch[-1].index + 1,
                ]
                for event in batch:
                    args.append(entry_id(event.index))
                    args.append(event.to_json())
                await self.hub._append_events(
                    keys=[key, self.hub.keys.registry(fanout_id)], args=args
                )
                return True
            except ResponseError as exc:
                if "equal or smaller" not in str(exc):
                    # Redis refused the write (out of memory, read-only replica, ...): as
                    # good as down for this fan-out; keep the events and try again.
                    self.hub._failed(exc)
                    unsure = True
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                if not unsure:
                    unsure = True
                    continue
                # Ours were all written, or someone else owns the fan-out now.
                owned.fenced = not await self.still_owner(fanout_id)
                if owned.fenced:
                    logger.error("fan-out %s: another replica took it over", fanout_id)
                    return False
            except RedisError as exc:
                self.hub._failed(exc)
                unsure = True
                await anyio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def last_index(self, fanout_id: str) -> int:
        last = await self.hub._r.xrevrange(self.hub.keys.events(fanout_id), count=1)
        return index_of(last[0][0]) if last else -1

    async def still_owner(self, fanout_id: str) -> bool:
        holder = await self.hub._r.get(self.hub.keys.lease(fanout_id))
        return holder is not None and holder.decode() == self.hub.replica_id

    async def finish(self, owned: Owned) -> None:
        """The fan-out ended: record it, let its keys expire, give back its locks."""
        entry = owned.entry
        fanout_id = entry.fanout_id
        retention_ms = int(self.hub.retention_s * 1000)
        delay = 0.05
        while not owned.fenced:
            try:
                pipe = self.hub._r.pipeline(transaction=True)  # the end, all at once
                pipe.hset(
                    self.hub.keys.registry(fanout_id),
                    mapping={
                        "state": "finished",
                        "finished_at": entry.finished_at or time.time(),
                        "error": entry.error or "",
                        "events": entry.log.next_index,
                    },
                )
                pipe.srem(self.hub.keys.running, fanout_id)
                for key in (
                    self.hub.keys.registry(fanout_id),
                    self.hub.keys.events(fanout_id),
                    self.hub.keys.cmds(fanout_id),
                    self.hub.keys.readers(fanout_id),
                ):
                    pipe.pexpire(key, retention_ms)
                await pipe.execute()
                await self.hub._forget_locks(fanout_id, owned.locks)
                await self.hub._release(
                    keys=[self.hub.keys.lease(fanout_id)], args=[self.hub.replica_id]
                )
                return
            except RedisError as exc:
                self.hub._failed(exc)
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
        if not self.hub.ok:
            return 0
        try:
            others = [
                key
                async for key in self.hub._r.scan_iter(match=self.hub.keys.replica("*"), count=100)
                if key.decode() != self.hub.keys.replica(self.hub.replica_id)
            ]
        except RedisError as exc:
            self.hub._failed(exc)
            return 0
        if not others:
            return 0
        handed = 0
        for owned in list(self.hub._owned.values()):
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

    async def let_go(self, owned: Owned) -> None:
        # Published up to the hand-over point: release the lease (the conversation locks
        # keep theirs until the next owner renews them) so a scanner takes it over now.
        fanout_id = owned.entry.fanout_id
        try:
            await self.hub._r.hset(self.hub.keys.registry(fanout_id), "owner", "")
            await self.hub._release(
                keys=[self.hub.keys.lease(fanout_id)], args=[self.hub.replica_id]
            )
        except RedisError as exc:
            self.hub._failed(exc)  # the lease then simply runs out

    async def heartbeat(self) -> None:
        """Renew this replica's leases and locks; drain commands; watch Redis' health."""
        interval = self.hub.lease_s / 3
        lease_ms = int(self.hub.lease_s * 1000)
        while True:
            try:
                # The replica's own heartbeat key is always in it: the pipeline is the health
                # check too.
                pipe = self.hub._r.pipeline(transaction=False)
                pipe.set(self.hub.keys.replica(self.hub.replica_id), b"1", px=lease_ms)
                owned = [o for o in self.hub._owned.values() if not o.fenced]
                for o in owned:
                    # Queued in the pipeline (the call itself only adds the command).
                    await self.hub._renew(
                        keys=[self.hub.keys.lease(o.entry.fanout_id)],
                        args=[self.hub.replica_id, lease_ms],
                        client=pipe,
                    )
                    for lock in o.locks:
                        await self.hub._renew(
                            keys=[self.hub.keys.conversation(lock)],
                            args=[o.entry.fanout_id, lease_ms],
                            client=pipe,
                        )
                results = await pipe.execute()
                self.hub._healthy()
                position = 1
                for o in owned:
                    if not results[position]:
                        await self.relet(o)
                    position += 1 + len(o.locks)
                for o in owned:
                    await self.drain(o.entry.fanout_id)
            except RedisError as exc:
                self.hub._failed(exc)
            except Exception:
                logger.exception("Redis hub heartbeat failed; trying again")
            await anyio.sleep(interval)

    async def relet(self, owned: Owned) -> None:
        # The lease ran out (Redis was away longer than the lease): take it again, unless
        # another replica took the fan-out over meanwhile.
        fanout_id = owned.entry.fanout_id
        if owned.stop_at is not None or fanout_id not in self.hub._owned:
            return  # being handed over: the lease was given up on purpose
        lease_ms = int(self.hub.lease_s * 1000)
        if await self.hub._r.set(
            self.hub.keys.lease(fanout_id), self.hub.replica_id, nx=True, px=lease_ms
        ) or await self.still_owner(fanout_id):
            return
        owned.fenced = True
        owned.scope.cancel()
        logger.error("fan-out %s: lost its lease to another replica", fanout_id)

    async def drain(self, fanout_id: str) -> None:
        """Apply the queued cancel commands of an owned fan-out."""
        owned = self.hub._owned.get(fanout_id)
        if owned is None:
            return
        pipe = self.hub._r.pipeline(transaction=True)
        pipe.lrange(self.hub.keys.cmds(fanout_id), 0, -1)
        pipe.delete(self.hub.keys.cmds(fanout_id))
        commands, _ = await pipe.execute()
        for raw in commands:
            try:
                command = orjson.loads(raw)
                reason = command.get("reason")
                owned.entry.cancel(
                    command.get("agent_id"), reason if reason in CANCEL_REASONS else "user"
                )
            except (orjson.JSONDecodeError, UnknownAgentError, AttributeError) as exc:
                logger.warning("fan-out %s: ignored command %r: %s", fanout_id, raw, exc)

    async def listen(self) -> None:
        """Drain an owned fan-out's commands as soon as its channel announces one."""
        delay = 0.1
        while True:
            pubsub = self.hub._r.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(self.hub.keys.ctl_pattern)
                delay = 0.1
                while True:
                    message = await pubsub.get_message(timeout=self.hub.block_ms / 1000)
                    if message is None:
                        continue
                    channel = message["channel"]
                    fanout_id = self.hub.keys.fanout_of_ctl(
                        channel.decode() if isinstance(channel, bytes) else channel
                    )
                    if fanout_id is not None and fanout_id in self.hub._owned:
                        await self.drain(fanout_id)
            except RedisError as exc:
                self.hub._failed(exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                    await pubsub.aclose()
