"""A judge: a Letta agent that compares two answers with a rubric, asked both ways round.

LLM judges favour a position (often the first answer). :class:`PairwiseJudge` asks each
pair twice with the answers swapped and keeps a verdict only when both asks agree on the
same answer; anything else (including a reply it cannot read) is a tie. A judge that always
says "A" therefore produces only ties. Each ask runs in a fresh conversation of the judge
agent (on Letta), so no verdict depends on the ones before it.

:func:`judge_batch` compares the answers to every prompt of a batch run pairwise and stores
each verdict as a :class:`Vote` of ``judge:<name>`` (one per pair), so judges and people
feed the same leaderboard.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from .._core._directory import AgentDirectory, AgentRef
from .._core._fanout import collect
from .._core._options import FanOutOptions
from ..batch._plan import BatchAgent
from ._model import TIE, Vote, VoteColumn
from ._store import VoteStore

__all__ = [
    "DEFAULT_RUBRIC",
    "JUDGE_TEMPLATE",
    "PairwiseJudge",
    "Verdict",
    "judge_batch",
    "read_verdict",
]

#: What a judge is asked unless its config gives a rubric.
DEFAULT_RUBRIC = "Which answer is more helpful, correct and clear?"

#: The message a judge gets for one ask; it must answer A, B or TIE.
JUDGE_TEMPLATE = """\
You are judging two answers to the same request.

Rubric: {rubric}

Request:
<<<
{prompt}
>>>

Answer A:
<<<
{first}
>>>

Answer B:
<<<
{second}
>>>

Which answer is better by the rubric? Reply with one word: A, B or TIE."""

#: The outcome of comparing answers ``a`` and ``b``: the better one, or a tie.
Verdict = Literal["a", "b", "tie"]

_WORD = re.compile(r"\b(A|B|TIE|Tie|tie)\b")


def read_verdict(text: str) -> Literal["A", "B", "TIE"] | None:
    """The judge's choice: the last standalone ``A``, ``B`` or ``TIE`` of its reply."""
    found = _WORD.findall(text)
    if not found:
        return None
    last = found[-1].upper()
    return "A" if last == "A" else "B" if last == "B" else "TIE"


@dataclass(frozen=True, slots=True)
class _JudgeRef(BatchAgent):
    # Read by LettaDirectory: every ask in a new conversation, deleted afterwards.
    fresh_conversation: bool | None = True
    keep_conversation: bool | None = False


class PairwiseJudge:
    """Compares two answers to a prompt through an agent of ``directory``.

    ``agent`` names the judge agent (optionally with a ``model``, a handle sent as Letta's
    ``override_model``); ``name`` makes its voter ``judge:<name>``. Raises what the
    directory raises for an agent it cannot resolve.
    """

    def __init__(
        self,
        directory: AgentDirectory,
        agent: AgentRef,
        *,
        name: str | None = None,
        rubric: str = DEFAULT_RUBRIC,
        model: str | None = None,
        options: FanOutOptions | None = None,
    ) -> None:
        self.directory = directory
        self.ref = _JudgeRef(
            agent.agent_id, agent.name, agent.label, model or getattr(agent, "model", None)
        )
        self.name = name or agent.label or agent.name or agent.agent_id or "judge"
        self.rubric = rubric
        self.options = options
        self.asks: list[str] = []

    @property
    def voter(self) -> str:
        """``judge:<name>``: the voter of this judge's votes."""
        return f"judge:{self.name}"

    async def ask(self, prompt: str, first: str, second: str) -> Literal["A", "B", "TIE"] | None:
        """One ask: which of answer A (``first``) and B (``second``) is better, or None when
        the judge failed or its reply names neither."""
        message = JUDGE_TEMPLATE.format(
            rubric=self.rubric, prompt=prompt, first=first, second=second
        )
        self.asks.append(message)
        sources = await self.directory.sources([self.ref])
        result = await collect(sources, message, self.options)
        (answer,) = result
        if answer.state != "done":
            return None
        return read_verdict(answer.text)

    async def compare(self, prompt: str, a: str, b: str) -> Verdict:
        """``a`` or ``b`` when both asks (``a`` first, then ``b`` first) agree, else ``tie``."""
        one = await self.ask(prompt, a, b)
        two = await self.ask(prompt, b, a)
        if one == "A" and two == "B":
            return "a"
        if one == "B" and two == "A":
            return "b"
        return "tie"


def _column(record: Mapping[str, Any]) -> VoteColumn:
    key = str(record.get("agent") or "")
    model = record.get("model")
    base = key[: -len(f"@{model}")] if model and key.endswith(f"@{model}") else key
    return VoteColumn(
        str(record.get("agent_id") or key), base, str(record.get("label") or key), model
    )


async def judge_batch(
    records: Sequence[Mapping[str, Any]],
    judge: PairwiseJudge,
    store: VoteStore | None = None,
    *,
    preset: str | None = None,
    concurrency: int = 4,
) -> list[Vote]:
    """Compare the answers to each prompt (and repeat) of a batch pairwise.

    Only answers that finished (``status: done``) are compared. Each verdict becomes a vote
    of ``judge.voter`` on the pair (stored in ``store`` when given, replacing an earlier
    verdict on the same pair); returns the votes in prompt order.
    """
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for record in records:
        if record.get("status") == "done":
            key = (str(record.get("prompt_id")), int(record.get("repeat") or 1))
            groups.setdefault(key, []).append(record)
    work: list[tuple[Mapping[str, Any], Mapping[str, Any], str]] = []
    for group in groups.values():
        fanout_id = str(group[0].get("fanout_id") or "")
        for n, first in enumerate(group):
            for second in group[n + 1 :]:
                work.append((first, second, fanout_id))
    votes: list[Vote | None] = [None] * len(work)
    limiter = anyio.CapacityLimiter(concurrency)

    async def run(slot: int) -> None:
        first, second, fanout_id = work[slot]
        async with limiter:
            verdict = await judge.compare(
                str(first.get("prompt") or ""), str(first.get("text")), str(second.get("text"))
            )
        a, b = _column(first), _column(second)
        winner = {"a": a.column_id, "b": b.column_id}.get(verdict, TIE)
        vote = Vote(
            fanout_id=fanout_id,
            winner=winner,
            columns=(a, b),
            voter=judge.voter,
            comment=f"{judge.name}: {verdict}",
            preset=preset,
            pair=f"{a.column_id}|{b.column_id}",
        )
        votes[slot] = vote.check()

    async with anyio.create_task_group() as tg:
        for slot in range(len(work)):
            tg.start_soon(run, slot)
    done = [vote for vote in votes if vote is not None]
    if store is not None:
        # One writer at a time: SQLite has a single write lock.
        done = [await store.cast(vote) for vote in done]
    return done
