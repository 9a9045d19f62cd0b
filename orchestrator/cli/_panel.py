"""The terminal panel: one prompt, several agents, answers streaming side by side (rich).

:func:`run_panel` fans a prompt out through a directory and draws every agent's answer in
its own column as the deltas arrive, then returns the :class:`~orchestrator.FanOutResult`;
:func:`figures_table` shows the figures per agent. Ctrl-C (SIGINT) cancels every agent
that still runs, on the server too, and the panel ends normally with what it has.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
from anyio.abc import TaskStatus
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .._core._directory import AgentDirectory, AgentRef
from .._core._events import Event
from .._core._fanout import FanOut, open_fanout
from .._core._options import FanOutOptions
from .._core._result import FanOutResult

_STYLES = {"streaming": "cyan", "done": "green", "error": "red", "cancelled": "yellow"}
# Redraw at most this often: deltas can arrive far faster than a terminal can show them.
_FRAME_S = 1 / 15


class _Column:
    def __init__(self, label: str) -> None:
        self.label = label
        self.state = "waiting"
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.tools: list[str] = []
        self.note = ""


class PanelView:
    """What the panel shows: a column per agent, fed with :meth:`apply`.

    A rich renderable, so it can be printed once or driven by ``rich.live.Live``.
    ``max_chars`` keeps the tail of long answers so a column fits on screen.
    """

    def __init__(self, prompt: str, agents: Sequence[tuple[str, str]], max_chars: int = 1200):
        self.prompt = prompt
        self.max_chars = max_chars
        self.columns: dict[str, _Column] = {agent_id: _Column(label) for agent_id, label in agents}

    def apply(self, event: Event) -> None:
        """Take one event of the merged stream into account."""
        if event.agent_id is None:
            return
        column = self.columns.get(event.agent_id)
        if column is None:
            return
        kind = event.type
        if kind == "agent_start":
            column.state = "streaming"
        elif kind == "content":
            column.text.append(event.delta)
        elif kind == "reasoning":
            column.reasoning.append(event.delta)
        elif kind == "tool_call":
            column.tools.append(str(event.get("name")))
        elif kind == "agent_done":
            column.state = "done"
            metrics = event.get("metrics") or {}
            ttft, rate = metrics.get("ttft_s"), metrics.get("tokens_per_s")
            column.note = " · ".join(
                part
                for part in (
                    f"ttft {ttft:.2f} s" if isinstance(ttft, int | float) else "",
                    f"{rate:.1f} tok/s" if isinstance(rate, int | float) else "",
                    str(event.get("stop_reason") or ""),
                )
                if part
            )
        elif kind == "agent_error":
            column.state = "error"
            column.note = f"{event.get('code')}: {event.get('message')}"
        elif kind == "agent_cancelled":
            column.state = "cancelled"
            column.note = f"cancelled ({event.get('reason')})"

    def text_of(self, agent_id: str) -> str:
        """The answer streamed so far by ``agent_id``."""
        return "".join(self.columns[agent_id].text)

    def _panel(self, column: _Column) -> Panel:
        body = Text()
        reasoning = "".join(column.reasoning)
        if reasoning:
            body.append(reasoning[-self.max_chars // 3 :] + "\n", style="dim italic")
        if column.tools:
            body.append("tools: " + ", ".join(column.tools) + "\n", style="magenta")
        answer = "".join(column.text)
        if len(answer) > self.max_chars:
            answer = "…" + answer[-self.max_chars :]
        body.append(answer)
        if column.note:
            body.append("\n" + column.note, style=_STYLES.get(column.state, "dim"))
        style = _STYLES.get(column.state, "dim")
        return Panel(
            body, title=f"[bold]{column.label}[/bold]", subtitle=column.state, border_style=style
        )

    def __rich__(self) -> RenderableType:
        grid = Table.grid(expand=True, padding=(0, 1))
        for _ in self.columns:
            grid.add_column(ratio=1)
        grid.add_row(*(self._panel(column) for column in self.columns.values()))
        return Group(Text(self.prompt, style="bold"), grid)


def _seconds(value: Any, unit: str = " s", digits: int = 2) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.{digits}f}{unit}"
    return "-"


def figures_table(result: FanOutResult, title: str = "figures per agent") -> Table:
    """A table per agent: time to first token, tokens/s, duration, tokens, stop reason."""
    table = Table(title=title)
    for name in ("agent", "status", "ttft", "tokens/s", "duration", "tokens", "stop reason"):
        table.add_column(name, justify="right" if name in ("ttft", "tokens/s") else "left")
    for agent in result:
        usage: Mapping[str, Any] = agent.usage
        ending = agent.stop_reason or (
            agent.error.code if agent.error else f"cancelled ({agent.cancel_reason})"
        )
        table.add_row(
            agent.label,
            f"[{_STYLES.get(agent.state, 'dim')}]{agent.state}[/]",
            _seconds(agent.metrics.ttft_s),
            _seconds(agent.metrics.tokens_per_s, "", 1),
            _seconds(agent.metrics.duration_s),
            str(usage.get("total_tokens", "-")),
            ending,
        )
    return table


async def _cancel_on_sigint(
    fanout: FanOut, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            # The fan-out closes each stream and cancels each run on the server; the
            # panel keeps drawing until every agent reported its cancellation.
            fanout.cancel(reason="user")


async def run_panel(
    directory: AgentDirectory,
    refs: Sequence[AgentRef],
    prompt: str,
    *,
    options: FanOutOptions | None = None,
    console: Console | None = None,
    handle_signals: bool = True,
) -> FanOutResult:
    """Stream ``prompt`` to ``refs`` side by side in the terminal; return the result.

    ``options`` are the fan-out's (defaults when ``None``). With
    ``handle_signals`` Ctrl-C cancels the agents (on the server too) instead of killing the
    process. Raises :class:`~orchestrator.ConfigError` for invalid options.
    """
    console = console or Console()
    sources = await directory.sources(refs)
    view = PanelView(prompt, [(s.agent_id, s.label) for s in sources])
    async with (
        open_fanout(sources, prompt, options) as fanout,
        anyio.create_task_group() as tg,
    ):
        if handle_signals:
            await tg.start(_cancel_on_sigint, fanout)
        with Live(view, console=console, auto_refresh=False, transient=False) as live:
            drawn = 0.0
            async for event in fanout:
                view.apply(event)
                now = time.monotonic()
                if now - drawn >= _FRAME_S or event.is_terminal:
                    live.refresh()
                    drawn = now
            live.refresh()
        # Whatever follows (the figures) starts on a line of its own.
        console.line()
        tg.cancel_scope.cancel()
    return fanout.result()
