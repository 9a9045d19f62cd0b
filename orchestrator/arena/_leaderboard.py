"""The leaderboard: a Bradley-Terry maximum-likelihood fit of votes, with bootstrap intervals.

Every vote becomes pairwise outcomes (:meth:`Vote.outcomes`): a winner among N beats each of
the others, a ranking gives all its pairs, a tie is half a win each way. Competitors are
grouped ``by`` agent, agent and model, or label; a pair whose two columns fall into one
group says nothing and is left out.

The fit maximises the Bradley-Terry log-likelihood with scipy's L-BFGS-B (a small L2 term
keeps an unbeaten competitor finite and fixes the scale's origin). Ratings are on the Elo
scale that Chatbot Arena uses: ``1000 + 400 * log10(e) * strength``, so 400 points are 10:1
odds. The 95 % interval comes from a bootstrap over votes (not over pairs: one vote's
outcomes stay together), drawn by a seeded numpy ``Generator``: the same votes and seed give
the same board.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ._model import Vote, VoteColumn

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["Grouping", "Leaderboard", "LeaderboardRow", "build_leaderboard", "fit_strengths"]

Grouping = Literal["agent", "agent_model", "label"]

#: Elo points per unit of Bradley-Terry strength (natural log odds).
ELO_SCALE = 400 / math.log(10)
#: The rating of an average competitor.
ELO_BASE = 1000.0
#: Weight of the L2 term on strengths: enough to keep a competitor that never lost finite,
#: small against the log-likelihood of a handful of votes.
L2 = 1e-3


@dataclass(frozen=True, slots=True)
class LeaderboardRow:
    """One competitor: rating with its 95 % interval, and what its votes say."""

    key: str
    agent_id: str
    label: str
    model: str | None
    rating: float
    ci_low: float
    ci_high: float
    votes: int
    wins: float
    losses: float
    ties: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "label": self.label,
            "model": self.model,
            "rating": round(self.rating, 1),
            "ci_low": round(self.ci_low, 1),
            "ci_high": round(self.ci_high, 1),
            "votes": self.votes,
            "wins": self.wins,
            "losses": self.losses,
            "ties": self.ties,
        }


@dataclass(frozen=True, slots=True)
class Leaderboard:
    """Rows sorted by rating (best first), the method used and the number of votes."""

    rows: list[LeaderboardRow]
    n_votes: int
    by: Grouping = "agent"
    method: str = ""
    rounds: int = 0
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [row.to_dict() for row in self.rows],
            "method": self.method,
            "n_votes": self.n_votes,
            "by": self.by,
        }


def _key(column: VoteColumn, by: Grouping) -> str:
    if by == "agent":
        return column.agent_id
    if by == "agent_model":
        return f"{column.agent_id}\x1f{column.model or ''}"
    return column.label


def fit_strengths(
    n: int, first: NDArray[np.intp], second: NDArray[np.intp], score: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Bradley-Terry strengths (mean zero) of ``n`` competitors from weighted outcomes.

    ``score[k]`` is how much of comparison ``k`` competitor ``first[k]`` won over
    ``second[k]`` (1, 0 or 0.5). Maximum likelihood by ``scipy.optimize.minimize``.
    """
    import numpy as np
    from scipy.optimize import minimize

    if n == 0:
        return np.zeros(0)

    def objective(beta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        diff = beta[first] - beta[second]
        # -log sigma(d) = logaddexp(0, -d): stable for large |d|.
        nll = score * np.logaddexp(0.0, -diff) + (1.0 - score) * np.logaddexp(0.0, diff)
        p = 1.0 / (1.0 + np.exp(-diff))
        g = p - score  # d nll / d diff
        grad = np.bincount(first, weights=g, minlength=n) - np.bincount(
            second, weights=g, minlength=n
        )
        return float(nll.sum() + L2 * beta @ beta), grad + 2 * L2 * beta

    result = minimize(objective, np.zeros(n), jac=True, method="L-BFGS-B")
    beta: NDArray[np.float64] = np.asarray(result.x, dtype=np.float64)
    centred: NDArray[np.float64] = beta - beta.mean()
    return centred


def build_leaderboard(
    votes: Sequence[Vote], *, by: Grouping = "agent", rounds: int = 200, seed: int = 0
) -> Leaderboard:
    """The leaderboard of ``votes``, grouped ``by`` agent, agent and model, or label.

    ``rounds`` bootstrap resamples of the votes (a seeded numpy ``Generator``) give each
    rating its 95 % interval. Needs the ``arena`` extra (numpy, scipy).
    """
    import numpy as np

    keys: dict[str, int] = {}
    info: dict[str, VoteColumn] = {}
    counts: dict[str, list[float]] = {}  # wins, losses, ties
    voted: dict[str, set[int]] = {}
    rows_of_vote: list[list[tuple[int, int, float]]] = []
    for n, vote in enumerate(votes):
        outcomes: list[tuple[int, int, float]] = []
        for outcome in vote.outcomes():
            a, b = _key(outcome.first, by), _key(outcome.second, by)
            if a == b:
                continue
            for key, column in ((a, outcome.first), (b, outcome.second)):
                if key not in keys:
                    keys[key] = len(keys)
                    counts[key] = [0.0, 0.0, 0.0]
                info[key] = _merge(info.get(key), column, by)
                voted.setdefault(key, set()).add(n)
            outcomes.append((keys[a], keys[b], outcome.score))
            if outcome.score == 0.5:
                counts[a][2] += 1
                counts[b][2] += 1
            else:
                winner, loser = (a, b) if outcome.score == 1.0 else (b, a)
                counts[winner][0] += 1
                counts[loser][1] += 1
        rows_of_vote.append(outcomes)
    size = len(keys)
    flat = [o for outcomes in rows_of_vote for o in outcomes]
    first = np.array([o[0] for o in flat], dtype=np.intp)
    second = np.array([o[1] for o in flat], dtype=np.intp)
    score = np.array([o[2] for o in flat], dtype=np.float64)
    strengths = fit_strengths(size, first, second, score)
    samples = np.empty((rounds, size))
    rng = np.random.default_rng(seed)
    # Each vote's outcomes are a block: the bootstrap draws votes, then takes their blocks.
    blocks: list[NDArray[np.intp]] = []
    start = 0
    for outcomes in rows_of_vote:
        blocks.append(np.arange(start, start + len(outcomes), dtype=np.intp))
        start += len(outcomes)
    empty = np.zeros(0, dtype=np.intp)
    for r in range(rounds):
        drawn = rng.integers(0, len(votes), size=len(votes)) if votes else empty
        picks = np.concatenate([empty, *(blocks[d] for d in drawn)])
        samples[r] = fit_strengths(size, first[picks], second[picks], score[picks])
    low, high = np.percentile(samples, [2.5, 97.5], axis=0) if rounds else (strengths, strengths)
    rows = [
        LeaderboardRow(
            key=key,
            agent_id=info[key].agent_id,
            label=info[key].label,
            model=info[key].model,
            rating=ELO_BASE + ELO_SCALE * float(strengths[i]),
            ci_low=ELO_BASE + ELO_SCALE * float(min(low[i], strengths[i])),
            ci_high=ELO_BASE + ELO_SCALE * float(max(high[i], strengths[i])),
            votes=len(voted[key]),
            wins=counts[key][0],
            losses=counts[key][1],
            ties=counts[key][2],
        )
        for key, i in keys.items()
    ]
    rows.sort(key=lambda row: (-row.rating, row.label))
    method = (
        f"Bradley-Terry maximum likelihood (scipy.optimize L-BFGS-B); 95% intervals from "
        f"{rounds} bootstrap resamples of votes (numpy Generator, seed {seed})"
    )
    return Leaderboard(rows, len(votes), by, method, rounds, seed)


def _merge(old: VoteColumn | None, new: VoteColumn, by: Grouping) -> VoteColumn:
    # The first column seen names the group; a group that spans several models (by agent or
    # by label) names none of them.
    if old is None:
        return new
    return VoteColumn(
        old.column_id, old.agent_id, old.label, old.model if old.model == new.model else None
    )
