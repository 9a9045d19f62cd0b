"""``orchestrator run | report | panel | demo``: batch runs, reports and the terminal panel.

Exit status: 0 success; 1 a pair failed (``run``, unless ``fail_on_error: false``), an agent
did not finish (``panel``/``demo``) or the Letta server failed; 2 a bad config or argument
(nothing ran); 130 interrupted by Ctrl-C (the message says how to resume).
"""

from __future__ import annotations

import dataclasses
import shlex
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import anyio
import typer
from anyio.abc import TaskStatus
from rich.console import Console
from rich.table import Table

from .._core._directory import AgentRef
from .._core._exceptions import ConfigError, OrchestratorError, SourceError
from .._core._options import FanOutOptions
from .._core._result import FanOutResult
from ..batch._config import LoadedBatch, load_batch
from ..batch._runner import BatchRunner, BatchSummary
from ..config._config import LettaConnection, load_panel
from ..letta._directory import LettaDirectory
from ..report._build import build_report
from ..report._render import write_report
from ._leaderboard import leaderboard_table
from ._panel import figures_table, run_panel
from ._progress import ProgressDisplay

T = TypeVar("T")

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

BaseUrl = Annotated[
    str | None,
    typer.Option("--base-url", help="Letta server URL (default: the config's, else the stack)"),
]


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _run_async(action: Callable[[], Awaitable[T]]) -> T:
    """Run ``action``; turn the package's errors into messages and exit codes."""
    try:
        try:
            return anyio.run(action)
        except BaseExceptionGroup as group:
            # A task group wraps the error of one of its tasks (e.g. the server went away).
            leaf = _first_leaf(group)
            if isinstance(leaf, OrchestratorError):
                raise leaf from group
            raise
    except ConfigError as exc:
        _err().print(f"[red]config error:[/red]\n{exc}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    except OrchestratorError as exc:
        _err().print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def run(
    config: Annotated[Path, typer.Argument(help="Batch config, e.g. configs/batch.yaml")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Results directory (default: output.dir)")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Skip pairs already in the results")
    ] = True,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="On resume, run failed pairs again")
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Progress bars")
    ] = True,
    base_url: BaseUrl = None,
) -> None:
    """Run every prompt of a batch config against every agent; write results as JSONL."""
    try:
        loaded = load_batch(config)
    except ConfigError as exc:
        _err().print(f"[red]config error:[/red]\n{exc}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    out_dir = out or loaded.out_dir
    connection = loaded.config.letta
    if base_url:
        connection = connection.model_copy(update={"base_url": base_url})
    console = Console()

    async def action() -> BatchSummary:
        async with LettaDirectory(connection=connection) as directory:
            missing = [
                s.key for s in await directory.sync(loaded.config.agents) if s.action == "missing"
            ]
            if missing:
                _err().print(f"[yellow]not on the server:[/yellow] {', '.join(missing)}")
            display = ProgressDisplay(console) if progress else None
            runner = BatchRunner(
                directory,
                loaded.plan,
                out_dir,
                resume=resume,
                redo_failed=retry_failed,
                observer=display,
            )
            async with anyio.create_task_group() as tg:
                await tg.start(_interrupt_on_signal, runner)
                if display is not None:
                    with display:
                        summary = await runner.run()
                else:
                    summary = await runner.run()
                tg.cancel_scope.cancel()
            if loaded.config.judge is not None and not summary.interrupted:
                await _judge(loaded, directory, out_dir, console)
            return summary

    summary = _run_async(action)
    console.print(
        f"{summary.written} written, {summary.skipped} already done, {summary.failed} failed "
        f"of {summary.total} pairs -> {summary.out_dir / 'results.jsonl'}",
        highlight=False,
    )
    if summary.interrupted:
        again = f"orchestrator run {shlex.quote(str(config))} --out {shlex.quote(str(out_dir))}"
        _err().print(
            f"[yellow]interrupted:[/yellow] {summary.remaining} pairs not done; "
            f"the runs in flight were cancelled. Resume with:\n  {again}",
            highlight=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    for record in summary.failures[:10]:
        error = record.get("error") or {}
        _err().print(
            f"[red]failed[/red] {record['prompt_id']} x {record['label']}: "
            f"{error.get('code') or record.get('cancel_reason')} {error.get('message', '')}",
            highlight=False,
        )
    if summary.failed and loaded.plan.fail_on_error:
        raise typer.Exit(EXIT_FAILED)


async def _judge(
    loaded: LoadedBatch, directory: LettaDirectory, out_dir: Path, console: Console
) -> None:
    # The judge section of the config: pairwise verdicts as votes (docs/arena.md).
    try:
        from ..arena import judge_results
    except ImportError as exc:
        _err().print(f"[yellow]judge skipped:[/yellow] needs the 'arena' extra ({exc})")
        return
    assert loaded.config.judge is not None
    await directory.sync([loaded.config.judge.agent])
    votes = await judge_results(loaded, directory, out_dir)
    voter = votes[0].voter if votes else "the judge"
    console.print(f"{len(votes)} verdicts by {voter} -> {out_dir / 'votes.jsonl'}")


async def _interrupt_on_signal(
    runner: BatchRunner, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            runner.cancel()


def report(
    results: Annotated[Path, typer.Argument(help="Results directory of `orchestrator run`")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write (default: the results dir)")
    ] = None,
) -> None:
    """Compare the answers side by side: report.md, report.html and summary.json."""
    try:
        paths = write_report(results, out)
        built = build_report(results)
    except ConfigError as exc:
        _err().print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    table = Table(title=built.title)
    for name in ("agent", "success", "median ttft", "median tok/s", "tokens", "errors"):
        table.add_column(name)
    for a in built.agents:
        rate = "-" if a.success_rate is None else f"{a.success_rate:.0%}"
        table.add_row(
            a.label,
            f"{a.succeeded}/{a.completed} ({rate})",
            "-" if a.median_ttft_s is None else f"{a.median_ttft_s:.2f} s",
            "-" if a.median_tokens_per_s is None else f"{a.median_tokens_per_s:.1f}",
            str(a.total_tokens),
            ", ".join(f"{c} x{n}" for c, n in a.errors.items()) or "-",
        )
    console = Console()
    console.print(table)
    if built.graded:
        grades = Table(title="assertions")
        for name in ("agent", "passed", "pass rate"):
            grades.add_column(name)
        for a in built.agents:
            rate = "-" if a.pass_rate is None else f"{a.pass_rate:.0%}"
            grades.add_row(a.label, f"{a.passed}/{a.checks}", rate)
        console.print(grades)
    if built.leaderboard is not None:
        console.print(leaderboard_table(built.leaderboard))
    if built.partial:
        console.print(f"partial results: {built.completed} of {built.planned} pairs")
    for kind, path in paths.items():
        console.print(f"{kind}: {path}", highlight=False)


def _parse_agents(agents: str) -> list[AgentRef]:
    refs = []
    for item in (a.strip() for a in agents.split(",")):
        if not item:
            continue
        # Letta ids look like ``agent-<uuid>``; anything else is a name.
        refs.append(AgentRef(agent_id=item) if item.startswith("agent-") else AgentRef(name=item))
    if not refs:
        raise ConfigError("--agents: give at least one agent id or name")
    return refs


def panel(
    prompt: Annotated[str, typer.Argument(help="The prompt sent to every agent")],
    agents: Annotated[
        str | None, typer.Option("--agents", help="Comma-separated agent names or ids")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Panel config, e.g. configs/panel.yaml")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Deadline per agent, seconds")
    ] = None,
    policy: Annotated[str | None, typer.Option("--policy", help="all, first or quorum:K")] = None,
    base_url: BaseUrl = None,
) -> None:
    """Stream one prompt to several agents side by side; figures per agent at the end."""
    if (agents is None) == (config is None):
        _err().print("[red]give either --agents or --config[/red]")
        raise typer.Exit(EXIT_CONFIG)

    async def action() -> FanOutResult:
        options = FanOutOptions()
        if config is not None:
            loaded = load_panel(config)
            connection, refs = loaded.letta, loaded.refs()
            options = loaded.options.to_options()
        else:
            connection, refs = LettaConnection(), _parse_agents(agents or "")
        if base_url:
            connection = connection.model_copy(update={"base_url": base_url})
        if timeout is not None:
            options = dataclasses.replace(options, timeout_s=timeout)
        if policy is not None:
            options = dataclasses.replace(options, policy=policy)
        async with LettaDirectory(connection=connection) as directory:
            if config is not None:
                await directory.sync(load_panel(config).agents)
            return await run_panel(directory, refs, prompt, options=options)

    result = _run_async(action)
    Console().print(figures_table(result))
    _exit_for(result)


def _exit_for(result: FanOutResult) -> None:
    if any(a.state == "cancelled" and a.cancel_reason == "user" for a in result):
        _err().print("[yellow]cancelled: the runs were cancelled on the server[/yellow]")
        raise typer.Exit(EXIT_INTERRUPTED)
    if not all(a.ok or a.cancel_reason == "policy" for a in result):
        raise typer.Exit(EXIT_FAILED)


def demo(
    prompt: Annotated[str | None, typer.Option("--prompt", help="Prompt to send")] = None,
    config: Annotated[Path, typer.Option("--config", help="Panel config")] = Path(
        "configs/panel.yaml"
    ),
    base_url: BaseUrl = None,
) -> None:
    """Bring the local stack up, sync the panel's agents, stream one prompt to all three."""
    from ._demo import run_demo

    async def action() -> FanOutResult:
        try:
            return await run_demo(config, prompt, base_url=base_url)
        except SourceError as exc:
            raise SourceError(f"{exc} (is the Letta server up?)", code=exc.code) from exc

    _exit_for(_run_async(action))


def register(app: typer.Typer) -> None:
    """Add ``run``, ``report``, ``panel`` and ``demo`` to the ``orchestrator`` app."""
    app.command("run")(run)
    app.command("report")(report)
    app.command("panel")(panel)
    app.command("demo")(demo)
