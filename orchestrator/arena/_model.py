"""What a vote is: the columns of a fan-out it judges, and its verdict."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._core._exceptions import OrchestratorError

__all__ = ["BOTH_BAD", "TIE", "Outcome", "Vote", "VoteColumn", "VoteError"]

#: ``winner`` of a vote that finds the answers equally good.
TIE = "tie"
#: ``winner`` of a vote that finds every answer bad (counted as a tie, as Chatbot Arena does).
BOTH_BAD = "both_bad"


class VoteError(OrchestratorError, ValueError):
    """Raised for a vote that names a column its fan-out does not have, or is malformed.

    ``field`` names the part of the vote at fault (``winner``, ``ranking``), ``column`` the
    foreign column when there is one.
    """

    def __init__(self, message: str, *, field: str, column: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.column = column


@dataclass(frozen=True, slots=True)
class VoteColumn:
    """One column of a fan-out: its stream id, the Letta agent behind it, label and model."""

    column_id: str
    agent_id: str
    label: str
    model: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {
            "column_id": self.column_id,
            "agent_id": self.agent_id,
            "label": self.label,
            "model": self.model,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """One pairwise comparison: ``score`` is 1 when ``first`` won, 0 when it lost, 0.5 tie."""

    first: VoteColumn
    second: VoteColumn
    score: float


@dataclass(frozen=True, slots=True)
class Vote:
    """A verdict on the columns of one fan-out.

    ``winner`` is a column id, :data:`TIE` or :data:`BOTH_BAD`; ``ranking`` (optional) orders
    column ids best first. ``running`` names the columns still streaming when the vote was
    cast. ``pair`` is empty for a vote over the whole fan-out; a judge's verdict on two of
    its columns sets it to those two ids, so that each pair keeps its own vote.
    """

    fanout_id: str
    winner: str
    columns: tuple[VoteColumn, ...]
    ranking: tuple[str, ...] = ()
    voter: str = "anonymous"
    comment: str | None = None
    running: tuple[str, ...] = ()
    session_id: str | None = None
    preset: str | None = None
    pair: str = ""
    created_at: float = field(default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (as ``POST /v1/fanouts/{id}/votes`` answers and ``votes.jsonl`` holds)."""
        return {
            "fanout_id": self.fanout_id,
            "voter": self.voter,
            "winner": self.winner,
            "ranking": list(self.ranking),
            "running": list(self.running),
            "comment": self.comment,
            "session_id": self.session_id,
            "preset": self.preset,
            "pair": self.pair,
            "created_at": self.created_at,
            "columns": [c.to_dict() for c in self.columns],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vote:
        """The vote :meth:`to_dict` wrote."""
        return cls(
            fanout_id=str(data["fanout_id"]),
            winner=str(data["winner"]),
            columns=tuple(
                VoteColumn(str(c["column_id"]), str(c["agent_id"]), str(c["label"]), c.get("model"))
                for c in data["columns"]
            ),
            ranking=tuple(data.get("ranking") or ()),
            voter=str(data.get("voter") or "anonymous"),
            comment=data.get("comment"),
            running=tuple(data.get("running") or ()),
            session_id=data.get("session_id"),
            preset=data.get("preset"),
            pair=str(data.get("pair") or ""),
            created_at=float(data.get("created_at") or 0.0),
        )

    def check(self) -> Vote:
        """Return the vote if every column it names is one of its columns.

        Raises :class:`VoteError` naming the first foreign column (``winner`` or
        ``ranking``), a column ranked twice, or a vote over fewer than two columns.
        """
        ids = [c.column_id for c in self.columns]
        if len(ids) < 2:
            raise VoteError("a vote needs a fan-out with at least two columns", field="winner")
        if self.winner not in (TIE, BOTH_BAD) and self.winner not in ids:
            raise VoteError(
                f"winner: {self.winner!r} is not a column of fan-out {self.fanout_id} "
                f"(columns: {', '.join(ids)})",
                field="winner",
                column=self.winner,
            )
        for column in self.ranking:
            if column not in ids:
                raise VoteError(
                    f"ranking: {column!r} is not a column of fan-out {self.fanout_id} "
                    f"(columns: {', '.join(ids)})",
                    field="ranking",
                    column=column,
                )
        if len(set(self.ranking)) != len(self.ranking):
            twice = next(c for c in self.ranking if self.ranking.count(c) > 1)
            raise VoteError(f"ranking: {twice!r} is ranked twice", field="ranking", column=twice)
        if self.ranking and self.winner in ids and self.ranking[0] != self.winner:
            raise VoteError(
                f"ranking: starts with {self.ranking[0]!r} but the winner is {self.winner!r}",
                field="ranking",
                column=self.ranking[0],
            )
        return self

    def outcomes(self) -> Iterator[Outcome]:
        """The pairwise comparisons this vote stands for.

        A ranking gives every pair of its columns (better first); a winner beats each other
        column; a tie or "both bad" ties every pair.
        """
        by_id = {c.column_id: c for c in self.columns}
        if self.ranking:
            ranked = [by_id[c] for c in self.ranking]
            for n, better in enumerate(ranked):
                for worse in ranked[n + 1 :]:
                    yield Outcome(better, worse, 1.0)
        elif self.winner in by_id:
            best = by_id[self.winner]
            for other in self.columns:
                if other.column_id != best.column_id:
                    yield Outcome(best, other, 1.0)
        else:
            yield from _all_ties(self.columns)


def _all_ties(columns: Sequence[VoteColumn]) -> Iterator[Outcome]:
    for n, first in enumerate(columns):
        for second in columns[n + 1 :]:
            yield Outcome(first, second, 0.5)
