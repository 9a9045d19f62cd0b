"""Reports from results directories: grid, per-agent figures, escaping, partial results."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator import AgentRef, ScriptedDirectory
from orchestrator.batch._plan import BatchPlan, PromptItem
from orchestrator.batch._runner import run_batch
from orchestrator.batch._store import read_jsonl
from orchestrator.report._build import build_report
from orchestrator.report._render import render_html, render_markdown, write_report
from orchestrator.testing import ScriptedSource

HOSTILE = "<script>alert(1)</script> | pipe"


def scripted() -> ScriptedDirectory:
    def good(agent_id: str, label: str) -> ScriptedSource:
        return ScriptedSource(agent_id, [f"{agent_id} ", "answers"], label=label)

    def hostile(agent_id: str, label: str) -> ScriptedSource:
        return ScriptedSource(agent_id, [HOSTILE], label=label)

    def broken(agent_id: str, label: str) -> ScriptedSource:
        return ScriptedSource(agent_id, ["x"], fail_at=0, fail_code="boom", label=label)

    return ScriptedDirectory({"good": good, "hostile": hostile, "broken": broken})


def plan(n_prompts: int = 3) -> BatchPlan:
    return BatchPlan(
        [PromptItem(f"q{n}", f"Question {n}?") for n in range(1, n_prompts + 1)],
        [
            AgentRef(agent_id="good", label="Good"),
            AgentRef(agent_id="hostile", label="Hostile"),
            AgentRef(agent_id="broken", label="Broken"),
        ],
        title="Report test",
    )


async def test_report_grid_and_summary(tmp_path: Path) -> None:
    await run_batch(scripted(), plan(), tmp_path)
    report = build_report(tmp_path)
    assert report.title == "Report test"
    assert [c.label for c in report.columns] == ["Good", "Hostile", "Broken"]
    assert [r.prompt_id for r in report.rows] == ["q1", "q2", "q3"]
    assert (report.planned, report.completed, report.partial) == (9, 9, False)
    good, hostile, broken = report.agents
    assert (good.succeeded, good.completed, good.success_rate) == (3, 3, 1.0)
    assert good.total_tokens == 3 * (2 + 2)  # "Question n?" is two words, two tokens out
    assert good.median_duration_s is not None
    assert hostile.succeeded == 3
    assert (broken.succeeded, broken.failed, broken.errors) == (0, 3, {"boom": 3})
    assert broken.success_rate == 0.0
    assert broken.median_ttft_s is None


async def test_html_escapes_agent_text(tmp_path: Path) -> None:
    await run_batch(scripted(), plan(1), tmp_path)
    page = render_html(build_report(tmp_path))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http" not in page.split("<body>")[0].replace('name="viewport"', "")
    assert page.count('class="cell"') == 3
    assert page.count('data-status="done"') == 2
    assert "error boom" in page


async def test_markdown_escapes_and_keeps_the_table_intact(tmp_path: Path) -> None:
    await run_batch(scripted(), plan(2), tmp_path)
    text = render_markdown(build_report(tmp_path))
    assert "<script>" not in text
    assert "\\| pipe" in text
    answer_rows = [line for line in text.splitlines() if line.startswith("| **q")]
    assert len(answer_rows) == 2
    for line in answer_rows:
        # prompt + three agents: four cells, so five unescaped pipes.
        assert line.replace("\\|", "").count("|") == 5
    assert "good answers" in text


async def test_partial_results(tmp_path: Path) -> None:
    await run_batch(scripted(), plan(3), tmp_path)
    results = tmp_path / "results.jsonl"
    kept = results.read_text().splitlines(keepends=True)[:4]
    results.write_text("".join(kept))
    report = build_report(tmp_path)
    assert (report.planned, report.completed, report.partial) == (9, 4, True)
    text = render_markdown(report)
    assert "Partial results: 4 of 9" in text
    assert "not run yet" in text
    paths = write_report(tmp_path)
    summary = json.loads(paths["json"].read_text())
    assert summary["partial"] is True
    assert summary["completed"] == 4
    statuses = [s for p in summary["prompts"] for s in p["status"].values()]
    assert statuses.count("missing") == 5


async def test_report_without_manifest_uses_records(tmp_path: Path) -> None:
    await run_batch(scripted(), plan(2), tmp_path)
    (tmp_path / "manifest.json").unlink()
    report = build_report(tmp_path)
    assert (report.planned, report.completed) == (6, 6)
    assert len(list(read_jsonl(tmp_path / "results.jsonl"))) == 6
