"""``orchestrator leaderboard``: the arena's Bradley-Terry ratings with 95 % intervals."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, cast

import anyio
import typer
from rich.console import Console
from rich.table import Table

from .._core._exceptions import ConfigError

__all__ = ["leaderboard"]


def _when(value: str | None, option: str) -> float | None:
    """Unix seconds from ``value``: a number, or an ISO 8601 date or time."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither Unix seconds nor an ISO 8601 time", param_hint=option
        ) from None


def leaderboard(
    by: Annotated[
        str, typer.Option(help="Rank each agent, each agent x model, or each label.")
    ] = "agent",
    database: Annotated[
        str | None,
        typer.Option(help="Database URL [default: $ORCHESTRATOR_DATABASE_URL, else SQLite]"),
    ] = None,
    session: Annotated[str | None, typer.Option(help="Only votes on this session.")] = None,
    preset: Annotated[str | None, typer.Option(help="Only votes on this preset.")] = None,
    voter: Annotated[str | None, typer.Option(help="Only this voter's (judge:NAME).")] = None,
    since: Annotated[str | None, typer.Option(help="From (Unix seconds or ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Before (Unix seconds or ISO 8601).")] = None,
    rounds: Annotated[int, typer.Option(min=0, max=10000, help="Bootstrap rounds.")] = 200,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the bootstrap.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Rank agents by the votes in the database (Bradley-Terry, bootstrap intervals)."""
    if by not in ("agent", "agent_model", "label"):
        raise typer.BadParameter("must be agent, agent_model or label", param_hint="--by")
    try:
        from ..arena import Grouping, VoteFilter, build_leaderboard, open_vote_store
    except ImportError as exc:
        typer.echo(
            f"error: 'leaderboard' needs the 'arena' extra "
            f"(pip install 'letta-fanout[arena]'): {exc}",
            err=True,
        )
        raise typer.Exit(2) from None
    where = VoteFilter(session, preset, voter, _when(since, "--since"), _when(until, "--until"))

    async def action() -> dict[str, object]:
        async with open_vote_store(database) as store:
            votes = await store.votes(where)
        board = build_leaderboard(votes, by=cast(Grouping, by), rounds=rounds, seed=seed)
        return board.to_dict()

    try:
        board = anyio.run(action)
    except ConfigError as exc:
        Console(stderr=True).print(f"[red]config error[/red]\n{exc}", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(board, indent=2))
        return
    Console().print(leaderboard_table(board))


def leaderboard_table(board: dict[str, object]) -> Table:
    """A rich table of a leaderboard's JSON (``Leaderboard.to_dict()``)."""
    rows = board["rows"]
    assert isinstance(rows, list)
    table = Table(title=f"leaderboard ({board['n_votes']} votes)", caption=str(board["method"]))
    for name in ("#", "label", "agent", "model", "rating", "95% CI", "votes", "W", "L", "T"):
        right = name in ("#", "rating", "votes", "W", "L", "T")
        table.add_column(name, justify="right" if right else "left", overflow="fold")
    for n, row in enumerate(rows, 1):
        table.add_row(
            str(n),
            row["label"],
            row["agent_id"] or "-",
            row["model"] or "-",
            f"{row['rating']:.0f}",
            f"{row['ci_low']:.0f} - {row['ci_high']:.0f}",
            str(row["votes"]),
            f"{row['wins']:g}",
            f"{row['losses']:g}",
            f"{row['ties']:g}",
        )
    return table
