"""``orchestrator demo`` (``make demo``): three real Letta agents answer side by side.

On a fresh machine it brings the local stack up (installing it on first use), makes the
agents of ``configs/panel.yaml`` exist (``agents sync``), sends one prompt to all three and
streams their answers side by side in the terminal, then prints the figures per agent.
Ctrl-C cancels the runs on the server.
"""

from __future__ import annotations

from pathlib import Path

import anyio
from rich.console import Console

from .._core._result import FanOutResult
from ..config._config import load_panel
from ..letta._directory import LettaDirectory
from ..stack._stack import StackInfo, stack_up
from ._panel import figures_table, run_panel

DEFAULT_PANEL = Path("configs/panel.yaml")
DEFAULT_PROMPT = "Should a small team adopt a monorepo?"


async def run_demo(
    config: Path | str = DEFAULT_PANEL,
    prompt: str | None = None,
    *,
    console: Console | None = None,
    base_url: str | None = None,
) -> FanOutResult:
    """Run the demo; return the fan-out's result.

    ``base_url`` skips bringing the local stack up and uses that Letta server instead.
    Raises :class:`~orchestrator.ConfigError` for a bad panel config and
    :class:`~orchestrator.SourceError` when the Letta server cannot be reached.
    """
    console = console or Console()
    panel = load_panel(config)
    if base_url is None:
        console.rule("[bold]1. the local stack")
        console.print("Bringing up Letta, PostgreSQL and the scripted model (first time: minutes)")
        info: StackInfo = await anyio.to_thread.run_sync(
            lambda: stack_up(echo=lambda line: console.print(f"  {line}", highlight=False))
        )
        base_url = info.base_url
        console.print(f"Letta {info.letta_version} at {base_url}")
    connection = panel.letta.model_copy(update={"base_url": base_url})
    async with LettaDirectory(connection=connection) as directory:
        console.rule(f"[bold]2. agents of {config}")
        for synced in await directory.sync(panel.agents):
            console.print(f"  {synced.label}: {synced.action} {synced.agent_id or ''}")
        question = prompt or (panel.prompts[0] if panel.prompts else DEFAULT_PROMPT)
        console.rule("[bold]3. one prompt, three agents (Ctrl-C cancels them on the server)")
        result = await run_panel(
            directory, panel.refs(), question, options=panel.options.to_options(), console=console
        )
    console.print(figures_table(result))
    return result
