"""The terminal panel over scripted agents: columns, figures, Ctrl-C cancels the agents."""

from __future__ import annotations

import io
import os
import signal

import anyio
from rich.console import Console

from orchestrator import AgentRef, ScriptedDirectory
from orchestrator.cli._panel import PanelView, figures_table, run_panel
from orchestrator.testing import ScriptedSource


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=150, force_terminal=False, color_system=None), out


class StallingSource(ScriptedSource):
    """Sets ``stalled`` when it stops sending (after its first token)."""

    def __init__(self, agent_id: str, label: str, stalled: anyio.Event) -> None:
        super().__init__(agent_id, [f"{agent_id}-", "answer"], label=label, stall_at=1)
        self.stalled = stalled

    async def _interrupt_at(self, k: int) -> None:
        if k == self.stall_at:
            self.stalled.set()
        await super()._interrupt_at(k)


def directory(stall: str | None = None, stalled: anyio.Event | None = None) -> ScriptedDirectory:
    def factory(agent_id: str, label: str) -> ScriptedSource:
        if agent_id == stall and stalled is not None:
            return StallingSource(agent_id, label, stalled)
        return ScriptedSource(
            agent_id, [f"{agent_id}-", "answer"], label=label, reasoning="thinking"
        )

    return ScriptedDirectory({"a": factory, "b": factory, "c": factory})


REFS = [AgentRef("a", label="Alpha"), AgentRef("b", label="Beta"), AgentRef("c", label="Gamma")]


async def test_panel_streams_every_agent_side_by_side() -> None:
    screen, out = console()
    result = await run_panel(directory(), REFS, "Hello?", console=screen, handle_signals=False)
    assert result.texts == {"a": "a-answer", "b": "b-answer", "c": "c-answer"}
    text = out.getvalue()
    for label in ("Alpha", "Beta", "Gamma", "a-answer", "c-answer", "thinking", "Hello?"):
        assert label in text
    screen.print(figures_table(result))
    table = out.getvalue()
    assert "end_turn" in table
    assert table.count("done") >= 3


def test_view_tracks_states_and_notes() -> None:
    from orchestrator import Event

    view = PanelView("q", [("a", "Alpha"), ("b", "Beta")], max_chars=5)

    def ev(kind: str, agent: str, **data: object) -> Event:
        return Event(kind, "f", agent, agent, 1, 0, 0.0, data)  # type: ignore[arg-type]

    view.apply(ev("agent_start", "a", run_id="r"))
    view.apply(ev("content", "a", delta="0123456789", message_id="m"))
    view.apply(ev("agent_error", "b", code="boom", message="bad", retryable=False))
    assert view.columns["a"].state == "streaming"
    assert view.text_of("a") == "0123456789"
    assert view.columns["b"].state == "error"
    screen, out = console()
    screen.print(view)
    rendered = out.getvalue()
    assert "…56789" in rendered
    assert "boom: bad" in rendered


async def test_sigint_cancels_running_agents_and_ends_the_panel() -> None:
    stalled = anyio.Event()
    scripted = directory(stall="c", stalled=stalled)
    screen, _ = console()
    result = None

    async def panel() -> None:
        nonlocal result
        result = await run_panel(scripted, REFS, "Hello?", console=screen)

    async with anyio.create_task_group() as tg:
        tg.start_soon(panel)
        with anyio.fail_after(10):
            # The panel installs its signal receiver before it starts streaming.
            await stalled.wait()
        os.kill(os.getpid(), signal.SIGINT)
    assert result is not None
    assert result["a"].ok
    assert result["b"].ok
    assert result["c"].state == "cancelled"
    assert result["c"].cancel_reason == "user"
    assert result["c"].text == "c-"
    source = scripted.created[-1]
    assert source.cancel_calls == 1
    assert all(s.closed for s in scripted.created)
