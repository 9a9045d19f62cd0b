"""The Bradley-Terry leaderboard: synthetic votes from known strengths come back in order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator.arena import BOTH_BAD, TIE, Vote, VoteColumn, build_leaderboard
from orchestrator.arena._leaderboard import ELO_SCALE

COLUMNS = {
    name: VoteColumn(f"col-{name}", f"agent-{name}", name.title())
    for name in ("strong", "good", "fair", "weak")
}
#: Known Bradley-Terry strengths (natural log odds); the fit must find them again.
TRUE = {"strong": 1.5, "good": 0.5, "fair": -0.5, "weak": -1.5}


def _synthetic(n: int, seed: int) -> list[Vote]:
    """``n`` two-answer votes between random pairs, won with Bradley-Terry odds."""
    rng = np.random.default_rng(seed)
    names = list(TRUE)
    votes = []
    for k in range(n):
        a, b = rng.choice(len(names), size=2, replace=False)
        first, second = COLUMNS[names[a]], COLUMNS[names[b]]
        p = 1 / (1 + math.exp(-(TRUE[names[a]] - TRUE[names[b]])))
        winner = first if rng.random() < p else second
        votes.append(Vote(f"f-{k}", winner.column_id, (first, second), voter=f"v{k}"))
    return votes


def test_the_fit_recovers_order_and_strengths() -> None:
    board = build_leaderboard(_synthetic(3000, seed=1), rounds=50, seed=7)
    assert [row.label for row in board.rows] == ["Strong", "Good", "Fair", "Weak"]
    fitted = {row.label.lower(): (row.rating - 1000) / ELO_SCALE for row in board.rows}
    for name, strength in TRUE.items():
        assert fitted[name] == pytest.approx(strength, abs=0.25), name
    for row in board.rows:
        assert row.ci_low <= row.rating <= row.ci_high
    assert board.n_votes == 3000
    assert "Bradley-Terry" in board.method


def test_intervals_shrink_as_votes_grow() -> None:
    few = build_leaderboard(_synthetic(60, seed=2), rounds=100)
    many = build_leaderboard(_synthetic(2000, seed=2), rounds=100)

    def width(board: object) -> float:
        rows = board.rows  # type: ignore[attr-defined]
        return float(np.mean([r.ci_high - r.ci_low for r in rows]))

    assert width(many) < width(few) / 3


def test_the_bootstrap_is_seeded() -> None:
    votes = _synthetic(200, seed=3)
    one = build_leaderboard(votes, rounds=30, seed=11).to_dict()
    two = build_leaderboard(votes, rounds=30, seed=11).to_dict()
    other = build_leaderboard(votes, rounds=30, seed=12).to_dict()
    assert one == two
    assert one != other


def test_a_winner_among_n_beats_each_other_and_a_ranking_gives_all_pairs() -> None:
    s, g, f = COLUMNS["strong"], COLUMNS["good"], COLUMNS["fair"]
    board = build_leaderboard(
        [
            Vote("f1", s.column_id, (s, g, f)),
            Vote("f2", g.column_id, (s, g, f), ranking=(g.column_id, f.column_id, s.column_id)),
        ],
        rounds=0,
    )
    counts = {r.label: (r.wins, r.losses, r.ties, r.votes) for r in board.rows}
    # f1: Strong beats Good and Fair. f2: Good > Fair > Strong, all three pairs.
    assert counts == {
        "Strong": (2, 2, 0, 2),
        "Good": (2, 1, 0, 2),
        "Fair": (1, 2, 0, 2),
    }


@pytest.mark.parametrize("verdict", [TIE, BOTH_BAD])
def test_a_tie_is_half_a_win_each_way(verdict: str) -> None:
    s, w = COLUMNS["strong"], COLUMNS["weak"]
    board = build_leaderboard([Vote(f"f{k}", verdict, (s, w)) for k in range(10)], rounds=0)
    assert [(r.wins, r.losses, r.ties) for r in board.rows] == [(0, 0, 10), (0, 0, 10)]
    assert board.rows[0].rating == pytest.approx(board.rows[1].rating, abs=1e-6)


def test_grouping_by_agent_model_and_label() -> None:
    m1 = VoteColumn("agent-x.1", "agent-x", "X (m1)", "p/m1")
    m2 = VoteColumn("agent-x.2", "agent-x", "X (m2)", "p/m2")
    votes = [Vote("f1", m1.column_id, (m1, m2))]
    # One agent on two models: by agent the pair says nothing; by model it does.
    assert build_leaderboard(votes, by="agent", rounds=0).rows == []
    rows = build_leaderboard(votes, by="agent_model", rounds=0).rows
    assert [(r.agent_id, r.model, r.wins) for r in rows] == [
        ("agent-x", "p/m1", 1),
        ("agent-x", "p/m2", 0),
    ]
    assert [r.label for r in build_leaderboard(votes, by="label", rounds=0).rows] == [
        "X (m1)",
        "X (m2)",
    ]


def test_no_votes_is_an_empty_board() -> None:
    board = build_leaderboard([], rounds=10)
    assert board.to_dict()["rows"] == []
    assert board.n_votes == 0
