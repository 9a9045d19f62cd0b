"""Progress bars for batch runs (rich): the whole run with an ETA, and each fan-out in flight."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .._core._events import Event
from .._core._types import JSON
from ..batch._plan import PromptItem


class ProgressDisplay:
    """A :class:`~orchestrator.batch._runner.BatchObserver` that draws rich progress bars.

    Use it as a context manager around the run: ``with ProgressDisplay(console) as
    progress: await run_batch(..., observer=progress)``. The top bar counts pairs (with
    failures) and estimates the time left; one bar per fan-out in flight counts its agents.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._overall: TaskID | None = None
        self._fanouts: dict[str, TaskID] = {}
        self.failed = 0

    def __enter__(self) -> ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def batch_started(self, total: int, already_done: int) -> None:
        note = f"{already_done} already done" if already_done else ""
        self._overall = self.progress.add_task(
            "[bold]all pairs", total=total, completed=already_done, note=note
        )

    def fanout_started(self, fanout_id: str, prompt: PromptItem, repeat: int, agents: int) -> None:
        name = prompt.prompt_id + (f" #{repeat}" if repeat > 1 else "")
        self._fanouts[fanout_id] = self.progress.add_task(f"  {name}", total=agents, note="")

    def event(self, fanout_id: str, event: Event) -> None:
        task = self._fanouts.get(fanout_id)
        if task is not None and event.is_terminal:
            self.progress.advance(task)

    def pair_finished(self, record: JSON) -> None:
        if self._overall is None:
            return
        if record.get("status") != "done":
            self.failed += 1
        note = f"[red]{self.failed} failed[/red]" if self.failed else ""
        self.progress.update(self._overall, advance=1, note=note)

    def fanout_finished(self, fanout_id: str) -> None:
        task = self._fanouts.pop(fanout_id, None)
        if task is not None:
            self.progress.remove_task(task)
