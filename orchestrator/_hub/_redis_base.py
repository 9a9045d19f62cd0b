"""State and helpers every part of the Redis hub shares (owner, takeover, mirrors)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from typing import Any

import anyio
import orjson
from anyio.abc import TaskGroup

from .._core._events import Event
from .._core._exceptions import HubUnavailableError
from .._core._types import CancelReason
from ._hub import FanOutHub, HubFanOut
from ._redis_entries import Owned
from ._redis_wire import (
    APPEND,
    LOCK_ALL,
    RELEASE,
    RENEW,
    SCAN_PAGE,
    Keys,
    RedisError,
    Reviver,
    decode_event,
    redact_url,
)

logger = logging.getLogger("orchestrator.hub.redis")


class RedisHubBase(FanOutHub):
    """The Redis hub's connection, settings and bookkeeping (see :class:`RedisFanOutHub`)."""

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
        self.keys = Keys(prefix)
        self.revive = revive
        self.block_ms = block_ms
        self._owned: dict[str, Owned] = {}
        self.ok = False
        self.last_error: str | None = "not connected yet"
        self.takeovers = 0
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self._lock_all = client.register_script(LOCK_ALL)
        self._append_events = client.register_script(APPEND)

    # -- the hub interface ------------------------------------------------------------------

    def _require_redis(self) -> None:
        if not self.ok:
            raise HubUnavailableError(
                f"Redis at {self.url} is unreachable ({self.last_error}); "
                "no new fan-out can start until it is back"
            )

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

    async def _read_all(self, fanout_id: str) -> tuple[list[Event], str | None]:
        """Every retained event of the fan-out, in order; stops at the first entry that is
        not a valid event and says why (second item, ``None`` when all were valid)."""
        key = self.keys.events(fanout_id)
        events: list[Event] = []
        start = "-"
        while True:
            page = await self._r.xrange(key, min=start, max="+", count=SCAN_PAGE)
            for raw_id, fields in page:
                try:
                    events.append(decode_event(fields))
                except (ValueError, KeyError) as exc:  # EventFormatError, bad JSON
                    return events, f"entry {raw_id!r} in Redis is not a valid event: {exc!r}"
            if len(page) < SCAN_PAGE:
                return events, None
            start = "(" + page[-1][0].decode()

    # -- bookkeeping -------------------------------------------------------------------------

    async def _forget_locks(self, fanout_id: str, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                await self._release(keys=[self.keys.conversation(key)], args=[fanout_id])
            except RedisError as exc:
                self._failed(exc)

    def _running_ttl_ms(self) -> int:
        # While running, keys outlive any retention; at the end they get exactly that.
        return int((self.retention_s + 86_400) * 1000)

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            # A background step's failure is logged; it never takes the hub down.
            try:
                await coro
            except Exception:
                logger.exception("Redis hub: a background step failed")

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
