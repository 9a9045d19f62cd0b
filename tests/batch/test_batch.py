"""Batch runner over scripted agents: records, limits, retries, interruption and resume."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import pytest

from orchestrator import (
    AgentRef,
    ConfigError,
    FanOutOptions,
    ScriptedDirectory,
    Source,
    SourceEvent,
)
from orchestrator._core._events import Event
from orchestrator._core._types import JSON
from orchestrator.batch._plan import BatchPlan, PromptItem, RetryPolicy
from orchestrator.batch._runner import BatchRunner, run_batch
from orchestrator.batch._store import ResultStore, read_jsonl, repair_torn_tail
from orchestrator.testing import ScriptedSource

AGENTS = ("alpha", "beta", "gamma")


def answer(agent_id: str) -> list[str]:
    return [f"{agent_id} ", "says ", "hello"]


def directory() -> ScriptedDirectory:
    def factory(agent_id: str, label: str) -> ScriptedSource:
        return ScriptedSource(agent_id, answer(agent_id), label=label, reasoning="hmm")

    return ScriptedDirectory(dict.fromkeys(AGENTS, factory))


def plan(n_prompts: int = 2, **kwargs: object) -> BatchPlan:
    prompts = [PromptItem(f"p{n}", f"question {n}") for n in range(1, n_prompts + 1)]
    agents = [AgentRef(agent_id=a, label=a.upper()) for a in AGENTS]
    return BatchPlan(prompts, agents, **kwargs)  # type: ignore[arg-type]


def records(out: Path) -> list[JSON]:
    return list(read_jsonl(out / "results.jsonl"))


async def test_batch_writes_one_record_per_pair(tmp_path: Path) -> None:
    summary = await run_batch(directory(), plan(repeats=2), tmp_path)
    rows = records(tmp_path)
    assert summary.ok
    assert (summary.total, summary.written, summary.done) == (12, 12, 12)
    assert len(rows) == 12
    assert len({r["key"] for r in rows}) == 12
    for row in rows:
        assert row["status"] == "done"
        assert row["text"] == "".join(answer(row["agent"]))
        assert row["reasoning"] == "hmm"
        assert row["label"] == row["agent"].upper()
        assert row["stop_reason"] == "end_turn"
        assert row["usage"]["completion_tokens"] == 3
        assert row["metrics"]["duration_s"] is not None
        assert row["error"] is None
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert len(manifest["pairs"]) == 12
    assert manifest["plan"]["repeats"] == 2


async def test_every_line_is_whole_json(tmp_path: Path) -> None:
    await run_batch(directory(), plan(), tmp_path)
    raw = (tmp_path / "results.jsonl").read_text()
    assert raw.endswith("\n")
    for line in raw.splitlines():
        assert isinstance(json.loads(line), dict)


async def test_resume_skips_pairs_already_done(tmp_path: Path) -> None:
    await run_batch(directory(), plan(n_prompts=1), tmp_path)
    scripted = directory()
    summary = await run_batch(scripted, plan(n_prompts=3), tmp_path)
    assert summary.skipped == 3
    assert summary.written == 6
    assert len(records(tmp_path)) == 9
    # The first prompt was not sent again.
    assert {m for s in scripted.created for m in s.messages} == {"question 2", "question 3"}


async def test_existing_results_without_resume_is_refused(tmp_path: Path) -> None:
    await run_batch(directory(), plan(n_prompts=1), tmp_path)
    with pytest.raises(ConfigError, match="already has results"):
        await run_batch(directory(), plan(n_prompts=1), tmp_path, resume=False)
    assert len(records(tmp_path)) == 3


async def test_changed_options_make_pairs_new(tmp_path: Path) -> None:
    await run_batch(directory(), plan(n_prompts=1), tmp_path)
    summary = await run_batch(
        directory(), plan(n_prompts=1, options=FanOutOptions(timeout_s=30)), tmp_path
    )
    assert (summary.skipped, summary.written) == (0, 3)


def test_torn_tail_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"key": "a"}\n{"key": "b"}\n{"key": "c", "te')
    assert repair_torn_tail(path) == len('{"key": "c", "te')
    assert path.read_text() == '{"key": "a"}\n{"key": "b"}\n'
    assert repair_torn_tail(path) == 0
    path.write_text('{"key": "a"}\n{"broken\n')
    repair_torn_tail(path)
    assert path.read_text() == '{"key": "a"}\n'


async def test_resume_after_torn_line_redoes_that_pair(tmp_path: Path) -> None:
    await run_batch(directory(), plan(n_prompts=1), tmp_path)
    path = tmp_path / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][:15])
    summary = await run_batch(directory(), plan(n_prompts=1), tmp_path)
    assert (summary.skipped, summary.written) == (2, 1)
    rows = records(tmp_path)
    assert len(rows) == 3
    assert sorted(r["agent"] for r in rows) == sorted(AGENTS)


async def test_unknown_agent_fails_the_run_but_not_the_others(tmp_path: Path) -> None:
    bad = BatchPlan(
        [PromptItem("p1", "hi")],
        [AgentRef(agent_id="alpha"), AgentRef(agent_id="nobody")],
    )
    summary = await run_batch(directory(), bad, tmp_path)
    assert not summary.ok
    assert (summary.done, summary.failed) == (1, 1)
    by_agent = {r["agent"]: r for r in records(tmp_path)}
    assert by_agent["alpha"]["status"] == "done"
    assert by_agent["nobody"]["error"]["code"] == "agent_not_found"
    assert by_agent["nobody"]["attempts"] == 1


def flaky_directory(failures: int, code: str = "rate_limited") -> ScriptedDirectory:
    calls = {"n": 0}

    def factory(agent_id: str, label: str) -> ScriptedSource:
        calls["n"] += 1
        fail_at = 0 if calls["n"] <= failures else None
        return ScriptedSource(agent_id, ["ok"], fail_at=fail_at, fail_code=code, label=label)

    return ScriptedDirectory({"alpha": factory})


async def test_retryable_error_is_retried_until_success(tmp_path: Path) -> None:
    one = BatchPlan(
        [PromptItem("p1", "hi")],
        [AgentRef(agent_id="alpha")],
        retry=RetryPolicy(attempts=3, backoff_s=0, on_codes=("rate_limited",)),
    )
    scripted = flaky_directory(failures=2)
    summary = await run_batch(scripted, one, tmp_path)
    assert summary.ok
    (row,) = records(tmp_path)
    assert (row["status"], row["text"], row["attempts"]) == ("done", "ok", 3)
    assert len(scripted.created) == 3


async def test_retries_give_up_after_the_last_attempt(tmp_path: Path) -> None:
    one = BatchPlan(
        [PromptItem("p1", "hi")],
        [AgentRef(agent_id="alpha")],
        retry=RetryPolicy(attempts=2, backoff_s=0, on_codes=("rate_limited",)),
    )
    summary = await run_batch(flaky_directory(failures=5), one, tmp_path)
    assert not summary.ok
    (row,) = records(tmp_path)
    assert (row["status"], row["attempts"], row["error"]["code"]) == ("error", 2, "rate_limited")


async def test_non_retryable_error_is_not_retried(tmp_path: Path) -> None:
    one = BatchPlan(
        [PromptItem("p1", "hi")],
        [AgentRef(agent_id="alpha")],
        retry=RetryPolicy(attempts=3, backoff_s=0, on_codes=("rate_limited",)),
    )
    scripted = flaky_directory(failures=1, code="bad_request")
    await run_batch(scripted, one, tmp_path)
    (row,) = records(tmp_path)
    assert (row["status"], row["attempts"]) == ("error", 1)
    assert len(scripted.created) == 1


class CountingSource:
    """Streams a few tokens and records how many streams of its directory run at once."""

    def __init__(self, agent_id: str, gauge: dict[str, int]) -> None:
        self._agent_id = agent_id
        self.gauge = gauge

    @property
    def agent_id(self) -> str:
        return self._agent_id

    @property
    def label(self) -> str:
        return self._agent_id

    async def stream(self, message: str) -> AsyncIterator[SourceEvent]:
        self.gauge["now"] += 1
        self.gauge["max"] = max(self.gauge["max"], self.gauge["now"])
        try:
            for _ in range(3):
                # Let other fan-outs start while this stream is open.
                await anyio.lowlevel.checkpoint()
                yield SourceEvent.content("x", "m")
        finally:
            self.gauge["now"] -= 1

    async def cancel(self) -> None:
        return None


class CountingDirectory(ScriptedDirectory):
    def __init__(self) -> None:
        super().__init__({})
        self.gauge = {"now": 0, "max": 0}

    async def sources(self, refs: Sequence[AgentRef]) -> list[Source]:
        return [CountingSource(r.key, self.gauge) for r in refs]


async def test_stream_limit_holds_over_all_fanouts(tmp_path: Path) -> None:
    scripted = CountingDirectory()
    summary = await run_batch(scripted, plan(n_prompts=8, max_fanouts=8, max_streams=4), tmp_path)
    assert summary.written == 24
    assert 3 <= scripted.gauge["max"] <= 4


class Interrupter:
    """An observer that interrupts the run once ``after`` records were written."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.runner: BatchRunner | None = None
        self.written = 0

    def batch_started(self, total: int, already_done: int) -> None:
        pass

    def fanout_started(self, fanout_id: str, prompt: PromptItem, repeat: int, agents: int) -> None:
        pass

    def event(self, fanout_id: str, event: Event) -> None:
        pass

    def pair_finished(self, record: JSON) -> None:
        self.written += 1
        if self.written == self.after and self.runner is not None:
            self.runner.cancel()

    def fanout_finished(self, fanout_id: str) -> None:
        pass


def slow_directory(stall_agent: str) -> ScriptedDirectory:
    """Agents that answer at once, except ``stall_agent`` which never ends by itself."""

    def factory(agent_id: str, label: str) -> ScriptedSource:
        stall = 1 if agent_id == stall_agent else None
        return ScriptedSource(agent_id, answer(agent_id), label=label, stall_at=stall)

    return ScriptedDirectory(dict.fromkeys(AGENTS, factory))


async def test_interrupted_run_resumes_to_the_same_results(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    await run_batch(directory(), plan(n_prompts=3), reference)

    interrupted = tmp_path / "interrupted"
    stalled = slow_directory(stall_agent="gamma")
    observer = Interrupter(after=2)
    runner = BatchRunner(stalled, plan(n_prompts=3, max_fanouts=1), interrupted, observer=observer)
    observer.runner = runner
    summary = await runner.run()
    assert summary.interrupted
    assert not summary.ok
    assert summary.written == 2
    assert summary.remaining == 7
    # The stalled agent was cancelled where it runs, and every stream was closed.
    gamma = [s for s in stalled.created if s.agent_id == "gamma"]
    assert gamma
    assert all(s.cancel_calls == 1 for s in gamma)
    assert all(s.closed for s in stalled.created)
    rows = records(interrupted)
    assert len(rows) == 2
    assert all(r["status"] == "done" for r in rows)

    resumed = await run_batch(directory(), plan(n_prompts=3), interrupted)
    assert (resumed.skipped, resumed.written) == (2, 7)
    assert resumed.ok

    def result_set(out: Path) -> set[tuple[str, str, str]]:
        return {(r["key"], r["status"], r["text"]) for r in records(out)}

    assert result_set(interrupted) == result_set(reference)
    assert len(records(interrupted)) == 9


async def test_event_logs_are_kept_when_asked(tmp_path: Path) -> None:
    await run_batch(directory(), plan(n_prompts=2, save_events=True), tmp_path)
    logs = sorted((tmp_path / "events").glob("*.jsonl"))
    assert len(logs) == 2
    for log in logs:
        events = [Event.from_dict(e) for e in read_jsonl(log)]
        assert events[0].type == "fanout_start"
        assert events[-1].type == "fanout_done"
        assert [e.index for e in events] == list(range(len(events)))


def test_invalid_plans_are_refused() -> None:
    with pytest.raises(ConfigError, match="max_streams"):
        plan(max_streams=2).validate()
    with pytest.raises(ConfigError, match="duplicate prompt ids"):
        BatchPlan([PromptItem("a", "x"), PromptItem("a", "y")], [AgentRef("z")]).validate()
    with pytest.raises(ConfigError, match="repeats"):
        plan(repeats=0).validate()


def test_store_close_is_idempotent(tmp_path: Path) -> None:
    store = ResultStore.open(tmp_path, resume=True)
    store.close()
    store.close()
