"""The arena: votes on the answers of a fan-out, judges, and leaderboards with intervals.

A :class:`Vote` names the best column of a fan-out (or a tie, or "all bad", or a full
ranking); a :class:`VoteStore` keeps votes in the sessions' SQL database (one per voter and
fan-out). :func:`build_leaderboard` fits a Bradley-Terry model to them with a seeded
bootstrap for 95 % intervals. :class:`PairwiseJudge` asks a Letta agent to compare answers
two at a time, both ways round, so its verdicts can join the same leaderboard. Needs the
``arena`` extra (numpy, scipy, and the ``sessions`` extra's SQLAlchemy).
"""

from __future__ import annotations

try:
    import sqlalchemy as _sqlalchemy  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "orchestrator.arena needs the 'arena' extra: pip install 'letta-fanout[arena]'"
    ) from exc

from ._batch import judge_results as judge_results
from ._batch import read_votes as read_votes
from ._judge import DEFAULT_RUBRIC as DEFAULT_RUBRIC
from ._judge import PairwiseJudge as PairwiseJudge
from ._judge import Verdict as Verdict
from ._judge import judge_batch as judge_batch
from ._judge import read_verdict as read_verdict
from ._leaderboard import Grouping as Grouping
from ._leaderboard import Leaderboard as Leaderboard
from ._leaderboard import LeaderboardRow as LeaderboardRow
from ._leaderboard import build_leaderboard as build_leaderboard
from ._model import BOTH_BAD as BOTH_BAD
from ._model import TIE as TIE
from ._model import Outcome as Outcome
from ._model import Vote as Vote
from ._model import VoteColumn as VoteColumn
from ._model import VoteError as VoteError
from ._store import VoteFilter as VoteFilter
from ._store import VoteStore as VoteStore
from ._store import open_vote_store as open_vote_store

__all__ = [
    "BOTH_BAD",
    "DEFAULT_RUBRIC",
    "TIE",
    "Grouping",
    "Leaderboard",
    "LeaderboardRow",
    "Outcome",
    "PairwiseJudge",
    "Verdict",
    "Vote",
    "VoteColumn",
    "VoteError",
    "VoteFilter",
    "VoteStore",
    "build_leaderboard",
    "judge_batch",
    "judge_results",
    "open_vote_store",
    "read_verdict",
    "read_votes",
]
