"""``orchestrator report`` shows pass rates per agent and the judge's leaderboard."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator import load_batch, run_batch
from orchestrator.arena import judge_results
from orchestrator.cli import app
from orchestrator.report._build import build_report
from orchestrator.report._render import write_report
from tests.arena.test_judge import _directory

pytestmark = pytest.mark.anyio


async def _judged_run(tmp_path: Path) -> Path:
    path = tmp_path / "batch.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            title: judged
            agents: [{{id: alpha}}, {{id: beta}}, {{id: gamma}}]
            prompts: ["Explain.", "Again."]
            assertions: [{{type: contains, value: good, name: says good}}]
            judge:
              agent: {{id: fair}}
              database: sqlite:///{tmp_path / "state.db"}
            """
        )
    )
    loaded = load_batch(path)
    out = tmp_path / "out"
    directory = _directory()
    assert (await run_batch(directory, loaded.plan, out)).ok
    assert len(await judge_results(loaded, directory, out)) == 6
    return out


async def test_the_report_has_pass_rates_and_the_leaderboard(tmp_path: Path) -> None:
    out = await _judged_run(tmp_path)
    report = build_report(out)
    rates = {a.agent: (a.passed, a.checks, a.pass_rate) for a in report.agents}
    assert rates == {"alpha": (2, 2, 1.0), "beta": (0, 2, 0.0), "gamma": (0, 2, 0.0)}
    assert report.leaderboard is not None
    rows = report.leaderboard["rows"]
    assert [r["label"] for r in rows] == ["alpha", "gamma", "beta"]
    assert all(r["ci_low"] <= r["rating"] <= r["ci_high"] for r in rows)

    paths = write_report(out)
    markdown = paths["markdown"].read_text()
    assert "## Assertions" in markdown
    assert "| alpha | 2/2 | 100% |" in markdown
    assert "## Leaderboard" in markdown
    assert "| 1 | alpha |" in markdown
    html = paths["html"].read_text()
    assert 'id="grades"' in html
    assert 'id="leaderboard"' in html
    summary = json.loads(paths["json"].read_text())
    assert summary["agents"][0]["pass_rate"] == 1.0
    assert summary["leaderboard"]["n_votes"] == 6

    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert "pass rate" in result.output
    assert "leaderboard (6 votes)" in result.output


async def test_a_report_without_grades_or_votes_has_neither(tmp_path: Path) -> None:
    path = tmp_path / "batch.yaml"
    path.write_text("agents: [{id: alpha}, {id: beta}]\nprompts: [hi]\n")
    out = tmp_path / "out"
    assert (await run_batch(_directory(), load_batch(path).plan, out)).ok
    report = build_report(out)
    assert not report.graded
    assert report.leaderboard is None
    markdown = write_report(out)["markdown"].read_text()
    assert "## Assertions" not in markdown
    assert "## Leaderboard" not in markdown
