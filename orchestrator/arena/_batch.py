"""The ``judge:`` section of a batch config, run after the batch: verdicts into the store.

``orchestrator run`` calls :func:`judge_results` once every pair has a record. The verdicts
go to the vote store (``judge.database``, default the state database) and, so that the
report needs no database, to ``votes.jsonl`` in the results directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from .._core._directory import AgentDirectory
from ..batch._config import LoadedBatch
from ..batch._plan import BatchAgent
from ..batch._store import read_jsonl
from ._judge import PairwiseJudge, judge_batch
from ._model import Vote
from ._store import open_vote_store

__all__ = ["VOTES_FILE", "judge_results", "read_votes"]

#: The judge's verdicts in a results directory, one JSON vote per line.
VOTES_FILE = "votes.jsonl"


async def judge_results(
    loaded: LoadedBatch, directory: AgentDirectory, out_dir: Path | str
) -> list[Vote]:
    """Judge the answers in ``out_dir`` as ``loaded.config.judge`` says; [] without one.

    Raises :class:`~orchestrator.ConfigError` for a database URL it cannot use.
    """
    config = loaded.config.judge
    if config is None:
        return []
    out_dir = Path(out_dir)
    ref = config.agent.to_ref()
    judge = PairwiseJudge(
        directory,
        BatchAgent(ref.agent_id, ref.name, ref.label, model=config.agent.model),
        name=config.name or config.agent.display,
        rubric=config.rubric,
        options=loaded.plan.options,
    )
    records = list(read_jsonl(out_dir / "results.jsonl"))
    preset = config.preset or loaded.config.title or loaded.path.stem
    async with open_vote_store(config.database) as store:
        votes = await judge_batch(
            records, judge, store, preset=preset, concurrency=config.concurrency
        )
    with (out_dir / VOTES_FILE).open("w", encoding="utf-8") as file:
        for vote in votes:
            file.write(json.dumps(vote.to_dict(), ensure_ascii=False) + "\n")
    return votes


def read_votes(out_dir: Path | str) -> list[Vote]:
    """The votes in ``out_dir/votes.jsonl`` ([] when there is none)."""
    path = Path(out_dir) / VOTES_FILE
    if not path.exists():
        return []
    return [Vote.from_dict(row) for row in read_jsonl(path)]
