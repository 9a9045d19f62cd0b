"""The pairwise judge: asked both ways round, a judge biased to a position gives only ties;
a consistent one gives wins, and its verdicts feed the leaderboard as votes."""

from __future__ import annotations

import re
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator import AgentRef, ScriptedDirectory, SourceEvent, load_batch, run_batch
from orchestrator.arena import (
    PairwiseJudge,
    VoteFilter,
    build_leaderboard,
    judge_batch,
    judge_results,
    open_vote_store,
    read_verdict,
    read_votes,
)
from orchestrator.batch import read_jsonl
from orchestrator.testing import ScriptedSource

pytestmark = pytest.mark.anyio

ANSWERS = {"alpha": "a good answer", "beta": "a poor answer", "gamma": "a fair answer"}


class FairJudge(ScriptedSource):
    """Picks the answer that says "good" (else "fair"), wherever it stands."""

    async def stream(self, message: str) -> AsyncIterator[SourceEvent]:
        first = re.search(r"Answer A:\n<<<\n(.*?)\n>>>", message, re.DOTALL)
        assert first is not None
        best = "good" if "good" in message else "fair"
        self.tokens = ["Verdict: ", "A" if best in first.group(1) else "B"]
        async for event in super().stream(message):
            yield event


def _directory() -> ScriptedDirectory:
    agents = {
        name: (lambda agent, label: ScriptedSource(agent, [ANSWERS[agent]], label=label))
        for name in ANSWERS
    }
    return ScriptedDirectory(
        {
            **agents,
            # Position bias at its purest: always the first answer.
            "first-picker": lambda agent, label: ScriptedSource(agent, ["A"], label=label),
            "fair": lambda agent, label: FairJudge(agent, [], label=label),
            "mute": lambda agent, label: ScriptedSource(agent, ["no", " idea"], label=label),
        }
    )


def _records(prompt: str = "p1") -> list[dict[str, object]]:
    return [
        {
            "prompt_id": prompt,
            "prompt": "Explain.",
            "repeat": 1,
            "agent": name,
            "agent_id": name,
            "label": name.title(),
            "model": None,
            "status": "done",
            "text": text,
            "fanout_id": f"fo-{prompt}",
        }
        for name, text in ANSWERS.items()
    ]


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [("A", "A"), ("b", None), ("I pick B.", "B"), ("tie", "TIE"), ("A... no, B", "B"), ("", None)],
)
def test_reading_a_verdict(reply: str, verdict: str | None) -> None:
    assert read_verdict(reply) == verdict


async def test_the_swap_cancels_a_judge_biased_to_the_first_position() -> None:
    directory = _directory()
    judge = PairwiseJudge(directory, AgentRef(agent_id="first-picker"), name="biased")
    votes = await judge_batch(_records(), judge)
    assert len(votes) == 3  # every pair of three answers
    assert {v.winner for v in votes} == {"tie"}
    assert {v.voter for v in votes} == {"judge:biased"}
    # Each pair was asked twice, the answers swapped between the asks.
    assert len(judge.asks) == 6
    board = build_leaderboard(votes, rounds=0)
    assert {(r.wins, r.losses, r.ties) for r in board.rows} == {(0, 0, 2)}


async def test_a_consistent_judge_decides_and_feeds_the_leaderboard(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    judge = PairwiseJudge(_directory(), AgentRef(agent_id="fair"), name="fair")
    async with open_vote_store(url) as store:
        votes = await judge_batch(_records(), judge, store, preset="nightly")
        again = await judge_batch(_records(), judge, store, preset="nightly")  # replaces
        stored = await store.votes(VoteFilter(voter="judge:fair"))
    assert sorted((v.pair, v.winner) for v in votes) == [
        ("alpha|beta", "alpha"),
        ("alpha|gamma", "alpha"),
        ("beta|gamma", "gamma"),
    ]
    assert len(again) == 3
    assert len(stored) == 3
    board = build_leaderboard(stored, rounds=20)
    assert [r.agent_id for r in board.rows] == ["alpha", "gamma", "beta"]


async def test_an_unreadable_reply_is_a_tie() -> None:
    judge = PairwiseJudge(_directory(), AgentRef(agent_id="mute"))
    votes = await judge_batch(_records(), judge)
    assert {v.winner for v in votes} == {"tie"}


async def test_failed_answers_are_not_judged() -> None:
    records = _records()
    records[1]["status"] = "error"
    judge = PairwiseJudge(_directory(), AgentRef(agent_id="fair"))
    votes = await judge_batch(records, judge)
    assert [v.pair for v in votes] == ["alpha|gamma"]


async def test_a_batch_config_with_a_judge(tmp_path: Path) -> None:
    path = tmp_path / "batch.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            title: judged
            agents: [{{id: alpha}}, {{id: beta}}]
            prompts: ["Explain.", "Again."]
            judge:
              agent: {{id: first-picker}}
              name: biased
              rubric: Which is kinder?
              database: sqlite:///{tmp_path / "state.db"}
            """
        )
    )
    loaded = load_batch(path)
    out = tmp_path / "out"
    directory = _directory()
    assert (await run_batch(directory, loaded.plan, out)).ok
    votes = await judge_results(loaded, directory, out)
    assert [(v.winner, v.preset) for v in votes] == [("tie", "judged"), ("tie", "judged")]
    assert read_votes(out) == votes
    fanouts = {r["fanout_id"] for r in read_jsonl(out / "results.jsonl")}
    assert {v.fanout_id for v in votes} == fanouts
    asked = directory.created[-1].messages[0]
    assert "Rubric: Which is kinder?" in asked
