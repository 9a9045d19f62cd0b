"""Batch runs: every prompt fans out to every agent, within limits, with retries and resume.

The runner only needs an :class:`~orchestrator.AgentDirectory` (Letta for real runs, a
scripted one in tests) and a :class:`~orchestrator.BatchPlan`. Each prompt x repeat is one
fan-out over the agents it still needs; fan-outs run concurrently, bounded by
``max_fanouts``, and by ``max_streams`` agent streams over all of them. A record is written
the moment its agent ends. A pair that ends with a retryable error is retried alone, with
exponential backoff (tenacity), and written once, with its last outcome.

Conversations (``plan.conversation``): ``fresh`` (the default) runs every pair in a new
conversation of its agent, so no answer depends on the prompts before it or on what ran at
the same time, and pairs of one agent may run at once; the conversations are deleted
afterwards unless ``plan.keep_conversations``. ``shared`` uses each agent's default
conversation: fan-outs then run strictly one at a time, in file order, each with its
retries, because one conversation never has two runs at once.

``BatchRunner.cancel()`` (what Ctrl-C calls) stops starting new work and cancels every
fan-out in flight, which closes their streams and cancels their runs on the server. Nothing
is written for the interrupted pairs, so running again with resume finishes exactly them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import anyio
from anyio.abc import TaskGroup
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

from .._core._directory import AgentDirectory, AgentRef
from .._core._events import Event
from .._core._fanout import open_fanout
from .._core._options import parse_policy
from .._core._types import JSON
from ._plan import BatchAgent, BatchPlan, Pair, PromptItem
from ._record import PairRecorder, record_failed
from ._store import JsonlWriter, ResultStore

logger = logging.getLogger("orchestrator.batch")


class BatchObserver(Protocol):
    """Hooks for progress displays; every method must return quickly and never raise."""

    def batch_started(self, total: int, already_done: int) -> None:
        """The run starts: ``total`` pairs, of which ``already_done`` are skipped."""

    def fanout_started(self, fanout_id: str, prompt: PromptItem, repeat: int, agents: int) -> None:
        """A fan-out (or a retry of one pair) started."""

    def event(self, fanout_id: str, event: Event) -> None:
        """An event of a fan-out in flight."""

    def pair_finished(self, record: JSON) -> None:
        """A pair's record was written."""

    def fanout_finished(self, fanout_id: str) -> None:
        """A fan-out ended."""


@dataclass(slots=True)
class BatchSummary:
    """What a batch run did: counts, the failed pairs, and whether it was interrupted."""

    out_dir: Path
    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    written: int = 0
    interrupted: bool = False
    failures: list[JSON] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        """Pairs that still have no record (non-zero after an interruption)."""
        return self.total - self.skipped - self.written

    @property
    def ok(self) -> bool:
        """True when the run finished and no pair failed (including earlier, resumed ones)."""
        return not self.interrupted and self.failed == 0 and self.remaining == 0


class BatchRunner:
    """Runs a :class:`BatchPlan` against a directory, writing into ``out_dir``.

    ``await runner.run()`` returns a :class:`BatchSummary`; ``runner.cancel()`` (sync, e.g.
    from a signal handler task) interrupts it cleanly. With ``resume`` (default) pairs
    already in ``out_dir/results.jsonl`` are skipped; ``redo_failed`` runs failed ones
    again. Raises :class:`ConfigError` for an invalid plan, or when ``out_dir`` has results
    and ``resume`` is false.
    """

    def __init__(
        self,
        directory: AgentDirectory,
        plan: BatchPlan,
        out_dir: Path | str,
        *,
        resume: bool = True,
        redo_failed: bool = False,
        observer: BatchObserver | None = None,
    ) -> None:
        self.directory = directory
        self.plan = plan.validate()
        self.out_dir = Path(out_dir)
        self.resume = resume
        self.redo_failed = redo_failed
        self.observer = observer
        self.summary = BatchSummary(self.out_dir, plan.total_pairs)
        self._scope: anyio.CancelScope | None = None
        self._cancelled = False
        self._fanouts = anyio.CapacityLimiter(plan.max_fanouts)
        self._streams = anyio.CapacityLimiter(plan.max_streams)
        # Taking N stream tokens is serialised: two fan-outs each holding part of what they
        # need would otherwise wait for each other forever.
        self._take_streams = anyio.Lock()
        self._store: ResultStore | None = None

    def cancel(self) -> None:
        """Interrupt the run: cancel fan-outs in flight (on the server too), start nothing."""
        self._cancelled = True
        self.summary.interrupted = True
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> BatchSummary:
        """Run every pair not yet done; return the summary (also after :meth:`cancel`)."""
        plan = self.plan
        with ResultStore.open(
            self.out_dir, resume=self.resume, save_events=plan.save_events
        ) as store:
            self._store = store
            pairs = plan.pairs()
            store.write_manifest(
                {
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "plan": plan.to_dict(),
                    "pairs": [
                        {
                            "key": p.key,
                            "prompt_id": p.prompt.prompt_id,
                            "agent": p.agent.key,
                            "repeat": p.repeat,
                        }
                        for p in pairs
                    ],
                }
            )
            todo: dict[tuple[str, int], list[Pair]] = {}
            for pair in pairs:
                old = store.done.get(pair.key)
                if old is not None and not (self.redo_failed and record_failed(old)):
                    self.summary.skipped += 1
                    if record_failed(old):
                        self.summary.failed += 1
                        self.summary.failures.append(old)
                    continue
                todo.setdefault((pair.prompt.prompt_id, pair.repeat), []).append(pair)
            if self.observer is not None:
                self.observer.batch_started(self.summary.total, self.summary.skipped)
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._cancelled:
                    scope.cancel()
                if plan.conversation == "shared":
                    for group in todo.values():
                        # The group's retries finish before the next group starts.
                        async with anyio.create_task_group() as tg:
                            await self._run_group(tg, group)
                else:
                    async with anyio.create_task_group() as tg:
                        for group in todo.values():
                            tg.start_soon(self._run_group, tg, group)
            self._scope = None
        self._store = None
        return self.summary

    # -- one fan-out ------------------------------------------------------------------------

    async def _run_group(self, tg: TaskGroup, pairs: Sequence[Pair]) -> None:
        """Fan one prompt out to ``pairs``' agents; write or retry each as it ends."""
        async with self._fanouts:
            borrowers = [object() for _ in pairs]
            async with self._take_streams:
                for borrower in borrowers:
                    await self._streams.acquire_on_behalf_of(borrower)
            try:
                await self._fan_out(tg, pairs, borrowers, attempt=1)
            finally:
                self._release(borrowers)

    async def _run_single(self, pair: Pair, attempt: int) -> PairRecorder:
        logger.info("retrying %s x %s (attempt %d)", pair.prompt.prompt_id, pair.agent.key, attempt)
        async with self._fanouts:
            borrower = object()
            async with self._take_streams:
                await self._streams.acquire_on_behalf_of(borrower)
            try:
                (recorder,) = await self._fan_out(None, [pair], [borrower], attempt)
            finally:
                self._release([borrower])
        return recorder

    def _release(self, borrowers: Sequence[object]) -> None:
        for borrower in borrowers:
            # Most were released already, the moment their agent ended.
            with suppress(RuntimeError):
                self._streams.release_on_behalf_of(borrower)

    async def _fan_out(
        self,
        tg: TaskGroup | None,
        pairs: Sequence[Pair],
        borrowers: Sequence[object],
        attempt: int,
    ) -> list[PairRecorder]:
        plan, store, observer = self.plan, self._store, self.observer
        assert store is not None
        prompt = pairs[0].prompt
        sources = await self.directory.sources([self._ref(p.agent) for p in pairs])
        options = plan.options
        quorum = parse_policy(options.policy)
        if quorum is not None and quorum > len(sources):
            # A resumed or retried subset is smaller than the quorum: wait for all of it.
            options = dataclasses.replace(options, policy="all")
        recorders: dict[str, PairRecorder] = {}
        tokens: dict[str, object] = {}
        log: JsonlWriter | None = None
        async with open_fanout(sources, prompt.text, options) as fanout:
            for source, pair, borrower in zip(sources, pairs, borrowers, strict=True):
                recorders[source.agent_id] = PairRecorder(pair, fanout.fanout_id, attempt)
                tokens[source.agent_id] = borrower
            log = store.event_log(fanout.fanout_id)
            if observer is not None:
                observer.fanout_started(fanout.fanout_id, prompt, pairs[0].repeat, len(pairs))
            try:
                async for event in fanout:
                    if log is not None:
                        log.write(event.to_dict())
                    if observer is not None:
                        observer.event(fanout.fanout_id, event)
                    if event.agent_id is None:
                        continue
                    recorder = recorders[event.agent_id]
                    recorder.add(event)
                    if event.is_terminal:
                        self._streams.release_on_behalf_of(tokens[event.agent_id])
                        if tg is not None:
                            self._settle(tg, recorder)
            finally:
                if log is not None:
                    log.close()
                if observer is not None:
                    observer.fanout_finished(fanout.fanout_id)
        return list(recorders.values())

    def _ref(self, agent: AgentRef) -> AgentRef:
        """What the directory gets: the agent, its model and where the pair runs."""
        fresh = self.plan.conversation == "fresh"
        return _PairRef(
            agent.agent_id,
            agent.name,
            agent.label,
            getattr(agent, "model", None),
            fresh_conversation=fresh or None,
            keep_conversation=self.plan.keep_conversations if fresh else None,
        )

    # -- outcomes and retries ---------------------------------------------------------------

    def _wants_retry(self, recorder: PairRecorder) -> bool:
        error = recorder.retryable_error
        return (
            error is not None
            and not self._cancelled
            and self.plan.retry.should_retry(error[0], error[1])
        )

    def _settle(self, tg: TaskGroup, recorder: PairRecorder) -> None:
        if recorder.attempt < self.plan.retry.attempts and self._wants_retry(recorder):
            tg.start_soon(self._retry, recorder)
        else:
            self._write(recorder)

    async def _retry(self, first: PairRecorder) -> None:
        policy = self.plan.retry
        # tenacity waits only between attempts, so the first attempt (already made inside
        # the shared fan-out) is replayed as its first outcome.
        replay: list[PairRecorder] = [first]
        latest = first

        async def attempt() -> PairRecorder:
            nonlocal latest
            if replay:
                return replay.pop()
            latest = await self._run_single(first.pair, latest.attempt + 1)
            return latest

        def give_up(state: RetryCallState) -> PairRecorder:
            assert state.outcome is not None
            result: PairRecorder = state.outcome.result()
            return result

        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts - first.attempt + 1),
            wait=wait_exponential(multiplier=policy.backoff_s, max=policy.max_backoff_s),
            retry=retry_if_result(self._wants_retry),
            sleep=anyio.sleep,
            retry_error_callback=give_up,
            reraise=True,
        )
        self._write(await retrying(attempt))

    def _write(self, recorder: PairRecorder) -> None:
        record = recorder.to_record()
        if self._cancelled and record["status"] == "cancelled":
            # Interrupted, not finished: leave it out so a resumed run does it again.
            return
        assert self._store is not None
        self._store.record(record)
        self.summary.written += 1
        if record_failed(record):
            self.summary.failed += 1
            self.summary.failures.append(record)
        else:
            self.summary.done += 1
        if self.observer is not None:
            self.observer.pair_finished(record)


@dataclass(frozen=True, slots=True)
class _PairRef(BatchAgent):
    # Read by directories that can use them (LettaDirectory); others see an AgentRef.
    fresh_conversation: bool | None = None
    keep_conversation: bool | None = None


async def run_batch(
    directory: AgentDirectory,
    plan: BatchPlan,
    out_dir: Path | str,
    *,
    resume: bool = True,
    redo_failed: bool = False,
    observer: BatchObserver | None = None,
) -> BatchSummary:
    """Run ``plan`` to the end and return its :class:`BatchSummary`.

    A shortcut for ``await BatchRunner(...).run()``; use :class:`BatchRunner` when something
    (a signal handler, a UI) must be able to interrupt the run.
    """
    runner = BatchRunner(
        directory, plan, out_dir, resume=resume, redo_failed=redo_failed, observer=observer
    )
    return await runner.run()
