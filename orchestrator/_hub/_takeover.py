"""Taking a dead replica's fan-outs over (the Redis hub)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from .._core._events import Event
from .._core._exceptions import EventFormatError
from .._core._fanout import open_fanout
from .._core._options import FanOutOptions, parse_policy
from .._core._source import Checkpoint, Source
from .._core._types import JSON
from ._fold import AgentFold, done_data, fold_agents
from ._hub import HubFanOut
from ._log import EventLog
from ._owner import Owner
from ._redis_entries import TakenOver
from ._redis_wire import (
    RedisError,
    text_field,
)

if TYPE_CHECKING:
    from ._redis_base import RedisHubBase

logger = logging.getLogger("orchestrator.hub.redis")


class Takeover:
    """Takes a dead replica's fan-outs over: finds them, revives their agents, and appends
    the continuation to their logs with no gap or duplicate."""

    def __init__(self, hub: RedisHubBase, owner: Owner) -> None:
        self.hub = hub
        self.owner = owner

    # -- taking over a dead replica's fan-outs -----------------------------------------------

    async def scan(self) -> None:
        """Take over every running fan-out whose owner's lease ran out."""
        interval = min(0.5, self.hub.lease_s / 4)
        lease_ms = int(self.hub.lease_s * 1000)
        while True:
            await anyio.sleep(interval)
            try:
                running = [i.decode() for i in await self.hub._r.smembers(self.hub.keys.running)]
                candidates = [i for i in running if i not in self.hub._owned]
                if not candidates:
                    continue
                pipe = self.hub._r.pipeline(transaction=False)
                for fanout_id in candidates:
                    pipe.exists(self.hub.keys.lease(fanout_id))
                leased = await pipe.execute()
                for fanout_id, exists in zip(candidates, leased, strict=True):
                    if exists or fanout_id in self.hub._owned:
                        continue
                    if await self.hub._r.set(
                        self.hub.keys.lease(fanout_id), self.hub.replica_id, nx=True, px=lease_ms
                    ):
                        await self._take_over_or_give_up(fanout_id)
            except RedisError as exc:
                self.hub._failed(exc)

    async def _take_over_or_give_up(self, fanout_id: str) -> None:
        try:
            await self.take_over(fanout_id)
        except RedisError:
            raise  # the lease runs out and a scan tries again once Redis answers
        except Exception as exc:
            # Not Redis: what is stored cannot be continued (a corrupt entry, say). Retrying
            # would fail the same way on every replica: end it as failed, with the reason.
            logger.exception("takeover of fan-out %s failed; marking it failed", fanout_id)
            pipe = self.hub._r.pipeline(transaction=True)  # both or neither
            pipe.hset(
                self.hub.keys.registry(fanout_id),
                mapping={
                    "state": "finished",
                    "finished_at": time.time(),
                    "error": f"takeover failed: {type(exc).__name__}: {exc}",
                },
            )
            pipe.srem(self.hub.keys.running, fanout_id)
            await pipe.execute()

    async def take_over(self, fanout_id: str) -> None:
        record = await self.hub._r.hgetall(self.hub.keys.registry(fanout_id))
        if not record:
            await self.hub._r.srem(self.hub.keys.running, fanout_id)
            return
        events, broken = await self.hub._read_all(fanout_id)
        if broken is not None:
            raise EventFormatError(f"fan-out {fanout_id}: {broken}")
        self.hub.takeovers += 1
        logger.warning(
            "taking over fan-out %s from replica %s (%d events logged)",
            fanout_id,
            text_field(record, "owner") or "?",
            len(events),
        )
        entry = TakenOver(fanout_id, record, max(self.hub.max_events, len(events) + 1))
        entry.log = EventLog(entry.log.max_events, first_index=events[0].index if events else 0)
        for event in events:
            await entry.log.append(event)
        locks = [k for k in orjson.loads(record.get(b"locks", b"[]")) if isinstance(k, str)]
        pipe = self.hub._r.pipeline(transaction=False)
        pipe.hset(self.hub.keys.registry(fanout_id), "owner", self.hub.replica_id)
        for lock in locks:
            pipe.set(self.hub.keys.conversation(lock), fanout_id, px=int(self.hub.lease_s * 1000))
        await pipe.execute()
        if fanout_id not in self.hub._fanouts:
            self.hub._fanouts[fanout_id] = entry
        self.owner.own(entry, locks, after=entry.log.next_index - 1)
        for hook in self.hub._takeover_hooks:
            try:
                await hook(fanout_id, events)
            except Exception:
                logger.exception("takeover hook %r failed for fan-out %s", hook, fanout_id)
        await self.owner.drain(fanout_id)
        self.hub._tg.start_soon(
            self._continue, entry, record, events, name=f"hub:takeover:{fanout_id}"
        )

    async def _continue(
        self, entry: TakenOver, record: Mapping[bytes, bytes], events: list[Event]
    ) -> None:
        """Run what is left of a taken-over fan-out and append it to the log, seamlessly."""
        try:
            await self._stitch(entry, record, events)
        except Exception as exc:
            logger.exception("takeover of fan-out %s failed", entry.fanout_id)
            entry.error = f"{type(exc).__name__}: {exc}"
        finally:
            entry._end()
            self.hub._ended_at[entry.fanout_id] = self.hub._clock()

    async def _stitch(
        self, entry: TakenOver, record: Mapping[bytes, bytes], events: list[Event]
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
            # What the policy still needs of the agents left (a quorum that can no longer be
            # reached waits for all of them, as the merger would).
            inner_policy = (
                "all" if need is None else f"quorum:{min(need - succeeded, len(sources))}"
            )
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
        if self.hub.revive is None or not isinstance(spec, dict):
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
            return await self.hub.revive(checkpoint)
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
        for observe in self.hub._observers:
            observe(event)
