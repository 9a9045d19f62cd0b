"""Comparison reports from a batch results directory.

:func:`build_report` reads ``manifest.json`` and ``results.jsonl`` (either may be partial:
a run still going, or interrupted) into a :class:`Report`: a grid of prompts (rows) x
agents (columns) whose cells are result records or ``None`` when missing, and a summary
per agent, with the pass rate of its assertions (the records' ``grades``) and, when a judge
ran (``votes.jsonl``), the leaderboard with 95 % intervals.
:func:`~orchestrator.report._render.write_report` renders it as ``report.md``, ``report.html`` (standalone)
and ``summary.json`` beside the results.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core._exceptions import ConfigError
from .._core._types import JSON
from ..batch._record import record_failed
from ..batch._store import MANIFEST_FILE, RESULTS_FILE, read_jsonl


@dataclass(frozen=True, slots=True)
class ReportColumn:
    """One agent of the report: its key (id or name, as in the config), label and model."""

    agent: str
    label: str
    model: str | None = None


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One prompt x repeat of the report; ``cells`` maps agent key to record (or None)."""

    prompt_id: str
    repeat: int
    prompt: str
    cells: dict[str, JSON | None]


@dataclass(frozen=True, slots=True)
class AgentSummary:
    """Figures of one agent over the whole run."""

    agent: str
    label: str
    model: str | None
    planned: int
    completed: int
    succeeded: int
    failed: int
    median_ttft_s: float | None
    median_tokens_per_s: float | None
    median_duration_s: float | None
    total_tokens: int
    errors: dict[str, int] = field(default_factory=dict)
    checks: int = 0
    passed: int = 0

    @property
    def success_rate(self) -> float | None:
        """Succeeded / completed pairs (``None`` before any pair completed)."""
        return self.succeeded / self.completed if self.completed else None

    @property
    def pass_rate(self) -> float | None:
        """Passed / run assertions over the agent's records (``None`` without any)."""
        return self.passed / self.checks if self.checks else None

    def to_dict(self) -> JSON:
        """JSON-ready data."""
        return {
            "agent": self.agent,
            "label": self.label,
            "model": self.model,
            "planned": self.planned,
            "completed": self.completed,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "success_rate": self.success_rate,
            "median_ttft_s": self.median_ttft_s,
            "median_tokens_per_s": self.median_tokens_per_s,
            "median_duration_s": self.median_duration_s,
            "total_tokens": self.total_tokens,
            "errors": dict(self.errors),
            "checks": self.checks,
            "passed": self.passed,
            "pass_rate": self.pass_rate,
        }


@dataclass(frozen=True, slots=True)
class Report:
    """A side-by-side comparison of a batch run (complete or partial)."""

    title: str
    columns: list[ReportColumn]
    rows: list[ReportRow]
    agents: list[AgentSummary]
    #: ``Leaderboard.to_dict()`` of the judge's votes, when the run has ``votes.jsonl``.
    leaderboard: JSON | None = None

    @property
    def graded(self) -> bool:
        """True when some record was graded by assertions."""
        return any(a.checks for a in self.agents)

    @property
    def planned(self) -> int:
        """Cells in the grid."""
        return len(self.rows) * len(self.columns)

    @property
    def completed(self) -> int:
        """Cells that have a record."""
        return sum(cell is not None for row in self.rows for cell in row.cells.values())

    @property
    def partial(self) -> bool:
        """True when some pairs have no record yet."""
        return self.completed < self.planned

    def to_dict(self) -> JSON:
        """The JSON summary (``summary.json``): counts and per-agent figures, no answers."""
        return {
            "title": self.title,
            "planned": self.planned,
            "completed": self.completed,
            "partial": self.partial,
            "agents": [a.to_dict() for a in self.agents],
            "leaderboard": self.leaderboard,
            "prompts": [
                {
                    "prompt_id": row.prompt_id,
                    "repeat": row.repeat,
                    "status": {
                        agent: (cell or {}).get("status", "missing")
                        for agent, cell in row.cells.items()
                    },
                }
                for row in self.rows
            ],
        }


def _median(values: Iterable[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return round(statistics.median(numbers), 4) if numbers else None


def _summarise(column: ReportColumn, cells: Sequence[JSON | None]) -> AgentSummary:
    records = [c for c in cells if c is not None]
    ok = [r for r in records if r.get("status") == "done"]
    failed = [r for r in records if record_failed(r)]
    errors: Counter[str] = Counter()
    for record in failed:
        error = record.get("error") or {}
        errors[str(error.get("code") or f"cancelled:{record.get('cancel_reason')}")] += 1
    return AgentSummary(
        agent=column.agent,
        label=column.label,
        model=column.model,
        planned=len(cells),
        completed=len(records),
        succeeded=len(ok),
        failed=len(failed),
        median_ttft_s=_median((r.get("metrics") or {}).get("ttft_s") for r in ok),
        median_tokens_per_s=_median((r.get("metrics") or {}).get("tokens_per_s") for r in ok),
        median_duration_s=_median((r.get("metrics") or {}).get("duration_s") for r in ok),
        total_tokens=sum(int((r.get("usage") or {}).get("total_tokens") or 0) for r in records),
        errors=dict(sorted(errors.items())),
        checks=sum(len(r.get("grades") or ()) for r in records),
        passed=sum(1 for r in records for g in r.get("grades") or () if g.get("pass") is True),
    )


def _leaderboard(root: Path) -> JSON | None:
    # The judge's verdicts (orchestrator run with a judge: section); needs the arena extra.
    if not (root / "votes.jsonl").exists():
        return None
    try:
        from ..arena import build_leaderboard, read_votes
    except ImportError:
        return None
    # By label: a batch labels each agent x model column uniquely.
    board = build_leaderboard(read_votes(root), by="label")
    return board.to_dict()


def build_report(results_dir: Path | str) -> Report:
    """Read a results directory into a :class:`Report`; works on partial results.

    Raises :class:`ConfigError` when the directory has neither a manifest nor results.
    """
    root = Path(results_dir)
    manifest_path = root / MANIFEST_FILE
    records = list(read_jsonl(root / RESULTS_FILE))
    if not manifest_path.exists() and not records:
        raise ConfigError(f"{root}: no {MANIFEST_FILE} or {RESULTS_FILE}: not a results directory")
    manifest: JSON = {}
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"{manifest_path}: not valid JSON: {exc}") from None
    plan: JSON = manifest.get("plan") or {}

    columns: dict[str, ReportColumn] = {}
    for agent in plan.get("agents", []):
        columns[agent["agent"]] = ReportColumn(
            agent["agent"], agent.get("label") or agent["agent"], agent.get("model")
        )
    prompts: dict[str, str] = {p["prompt_id"]: p["text"] for p in plan.get("prompts", [])}
    repeats = int(plan.get("repeats", 1))
    latest: dict[tuple[str, int, str], JSON] = {}
    wanted = {p["key"] for p in manifest.get("pairs", [])}
    for record in records:
        if wanted and record.get("key") not in wanted:
            continue  # from an earlier plan of the same directory
        agent = str(record.get("agent"))
        column = columns.setdefault(
            agent, ReportColumn(agent, str(record.get("label") or agent), record.get("model"))
        )
        if column.model is None and record.get("model"):
            # A reference without a model in the config: the record knows which answered.
            columns[agent] = column = ReportColumn(column.agent, column.label, record["model"])
        prompt_id = str(record.get("prompt_id"))
        prompts.setdefault(prompt_id, str(record.get("prompt", "")))
        repeats = max(repeats, int(record.get("repeat", 1)))
        latest[(prompt_id, int(record.get("repeat", 1)), agent)] = record

    rows = [
        ReportRow(
            prompt_id,
            repeat,
            text,
            {agent: latest.get((prompt_id, repeat, agent)) for agent in columns},
        )
        for prompt_id, text in prompts.items()
        for repeat in range(1, repeats + 1)
    ]
    summaries = [
        _summarise(column, [row.cells[column.agent] for row in rows]) for column in columns.values()
    ]
    title = str(plan.get("title") or manifest.get("title") or f"Batch results: {root.name}")
    return Report(title, list(columns.values()), rows, summaries, _leaderboard(root))
