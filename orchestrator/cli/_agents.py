"""``orchestrator agents sync|list``: make a config's agents exist; show a server's agents."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import anyio
import typer
from rich.console import Console
from rich.table import Table

from .._core._directory import AgentInfo
from .._core._exceptions import ConfigError, SourceError
from ..config._config import LettaConnection, load_panel
from ..letta._directory import LettaDirectory, SyncResult

__all__ = ["agents_app"]

agents_app = typer.Typer(
    no_args_is_help=True,
    help="Letta agents: create the ones a config describes, list the server's agents.",
)

T = TypeVar("T")

_STYLE = {"created": "green", "reused": "cyan", "found": "cyan", "missing": "red"}

BaseUrl = Annotated[
    str | None,
    typer.Option(help="Letta server URL [default: the config's, $LETTA_BASE_URL, local stack]"),
]


def _run(action: Callable[[], Awaitable[T]]) -> T:
    err = Console(stderr=True)
    try:
        return anyio.run(action)
    except ConfigError as exc:
        # soft_wrap: one problem per line, never broken, so "file:line: key" stays greppable.
        err.print(f"[red]config error[/red]\n{exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except SourceError as exc:
        err.print(
            f"[red]letta error ({exc.code})[/red]: {exc.message}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(1) from None


def _sync_table(results: list[SyncResult]) -> Table:
    table = Table(title="agents sync")
    for column in ("label", "name / id", "action", "agent id", "model"):
        # Ids are what users copy: wrap them rather than cut them short.
        table.add_column(column, overflow="fold")
    for r in results:
        style = _STYLE[r.action]
        table.add_row(
            r.label, r.key, f"[{style}]{r.action}[/{style}]", r.agent_id or "-", r.model or "-"
        )
    return table


@agents_app.command()
def sync(
    config: Annotated[Path, typer.Argument(help="Panel config, e.g. configs/panel.yaml")],
    base_url: BaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Create the config's missing agents and reuse existing ones by name (idempotent)."""

    async def action() -> list[SyncResult]:
        panel = load_panel(config)
        connection = panel.letta
        if base_url:
            connection = connection.model_copy(update={"base_url": base_url})
        async with LettaDirectory(connection=connection) as directory:
            return await directory.sync(panel.agents)

    results = _run(action)
    counts = {a: sum(r.action == a for r in results) for a in ("created", "reused", "found")}
    missing = [r.key for r in results if r.action == "missing"]
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "agents": [
                        {
                            "label": r.label,
                            "key": r.key,
                            "action": r.action,
                            "agent_id": r.agent_id,
                            "model": r.model,
                        }
                        for r in results
                    ],
                    "counts": {**counts, "missing": len(missing)},
                }
            )
        )
    else:
        console = Console()
        console.print(_sync_table(results))
        console.print(
            f"created {counts['created']}, reused {counts['reused']}, "
            f"found {counts['found']}, missing {len(missing)}",
            highlight=False,
        )
    if missing:
        Console(stderr=True).print(
            f"[red]not on the server and no spec to create them:[/red] {', '.join(missing)}"
        )
        raise typer.Exit(1)


@agents_app.command("list")
def list_agents(
    base_url: BaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Show every agent of the Letta server."""

    async def action() -> list[AgentInfo]:
        async with LettaDirectory(connection=LettaConnection(base_url=base_url)) as directory:
            return await directory.list_agents()

    agents = _run(action)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "agent_id": a.agent_id,
                        "name": a.name,
                        "model": a.model,
                        "description": a.description,
                    }
                    for a in agents
                ]
            )
        )
        return
    table = Table(title=f"{len(agents)} agents")
    for column in ("name", "agent id", "model", "description"):
        table.add_column(column, overflow="fold")
    for a in sorted(agents, key=lambda a: a.name):
        table.add_row(a.name, a.agent_id, a.model or "-", a.description or "")
    Console().print(table)
