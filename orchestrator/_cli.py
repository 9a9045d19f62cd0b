"""The ``orchestrator`` command line (typer); each concern adds its own sub-app here."""

from __future__ import annotations

import typer

from ._agents_cli import agents_app
from ._run_cli import register as register_run_commands
from ._serve_cli import serve
from ._stack_cli import stack_app

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, help="Fan one prompt out to several Letta agents.")
app.add_typer(stack_app, name="stack")
app.add_typer(agents_app, name="agents")
app.command("serve")(serve)
register_run_commands(app)


def main() -> None:
    """Run the ``orchestrator`` console script."""
    app()
