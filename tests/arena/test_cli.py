"""``orchestrator leaderboard``: a rich table, or JSON, of the votes in a database."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
from typer.testing import CliRunner

from orchestrator.arena import Vote, VoteColumn, open_vote_store
from orchestrator.cli import app

A = VoteColumn("agent-a", "agent-a", "Optimist")
B = VoteColumn("agent-b", "agent-b", "Skeptic", "p/m1")


def _database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'state.db'}"

    async def fill() -> None:
        async with open_vote_store(url) as store:
            for n in range(4):
                winner = "agent-a" if n < 3 else "tie"
                await store.cast(Vote(f"f-{n}", winner, (A, B), voter=f"v{n}", created_at=n + 1))

    anyio.run(fill)
    return url


def test_json_output(tmp_path: Path) -> None:
    url = _database(tmp_path)
    result = CliRunner().invoke(app, ["leaderboard", "--database", url, "--json", "--rounds", "20"])
    assert result.exit_code == 0, result.output
    board = json.loads(result.output)
    assert board["n_votes"] == 4
    assert [(r["label"], r["wins"], r["losses"], r["ties"]) for r in board["rows"]] == [
        ("Optimist", 3, 0, 1),
        ("Skeptic", 0, 3, 1),
    ]


def test_filters_and_the_table(tmp_path: Path) -> None:
    url = _database(tmp_path)
    runner = CliRunner()
    result = runner.invoke(
        app, ["leaderboard", "--database", url, "--since", "4", "--json", "--rounds", "0"]
    )
    assert json.loads(result.output)["n_votes"] == 1
    result = runner.invoke(app, ["leaderboard", "--database", url, "--rounds", "10"])
    assert result.exit_code == 0, result.output
    assert "Optimist" in result.output
    assert "Bradley-Terry" in result.output


def test_bad_options_are_refused(tmp_path: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = runner.invoke(app, ["leaderboard", "--database", url, "--by", "model"])
    assert result.exit_code == 2
    assert "agent_model" in result.output
    result = runner.invoke(app, ["leaderboard", "--database", url, "--since", "yesterday"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["leaderboard", "--database", "mysql://x/y"])
    assert result.exit_code == 2
    assert "database URL" in result.output
