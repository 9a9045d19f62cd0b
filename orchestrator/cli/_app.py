"""The ``orchestrator`` command line (typer); each concern adds its own sub-app here.

Commands from other packages (``serve``, from ``api``) arrive through the entry-point group
``orchestrator.cli``: each entry point is a ``register(app)`` function.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

import typer

from ._agents import agents_app
from ._leaderboard import leaderboard
from ._run import register as register_run_commands
from ._stack import stack_app

__all__ = ["ENTRY_POINT_GROUP", "app", "main"]

ENTRY_POINT_GROUP = "orchestrator.cli"

app = typer.Typer(no_args_is_help=True, help="Fan one prompt out to several Letta agents.")
app.add_typer(stack_app, name="stack")
app.add_typer(agents_app, name="agents")
register_run_commands(app)
app.command("leaderboard")(leaderboard)


def _missing_extra(name: str, exc: ImportError) -> Callable[[], None]:
    def command() -> None:
        typer.echo(
            f"error: '{name}' needs the 'server' extra (pip install 'letta-fanout[server]'): {exc}",
            err=True,
        )
        raise typer.Exit(2)

    command.__doc__ = f"(unavailable: install letta-fanout[server] for '{name}')"
    return command


def _register_plugin(entry: EntryPoint) -> None:
    try:
        register = entry.load()
    except ImportError as exc:  # an extra that is not installed: say which, when it is used
        app.command(entry.name)(_missing_extra(entry.name, exc))
        return
    register(app)


for _entry in entry_points(group=ENTRY_POINT_GROUP):
    _register_plugin(_entry)


def main() -> None:
    """Run the ``orchestrator`` console script."""
    app()
