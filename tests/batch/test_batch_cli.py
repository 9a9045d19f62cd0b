"""The ``run`` and ``report`` commands without a server: bad configs stop before anything runs."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from orchestrator import AgentRef, ScriptedDirectory
from orchestrator.batch._plan import BatchPlan, PromptItem
from orchestrator.batch._runner import run_batch
from orchestrator.cli import app
from orchestrator.testing import ScriptedSource

runner = CliRunner()


def test_bad_config_exits_2_and_runs_nothing(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("agents:\n  - name: a\nprompts: [hi]\nrepeats: 0\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(config), "--out", str(out), "--no-progress"])
    assert result.exit_code == 2
    assert f"{config}:4: repeats:" in result.output
    assert not out.exists()


def test_unknown_key_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("agents:\n  - name: a\nprompts: [hi]\nrepeat: 2\n")
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"{config}:4: repeat: unknown key (did you mean 'repeats'?)" in result.output


def test_report_of_a_non_results_dir_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a results directory" in result.output


async def test_report_command_writes_three_files(tmp_path: Path) -> None:
    def factory(agent_id: str, label: str) -> ScriptedSource:
        return ScriptedSource(agent_id, ["fine"], label=label)

    plan = BatchPlan([PromptItem("p1", "hi")], [AgentRef("a"), AgentRef("b")], title="CLI")
    await run_batch(ScriptedDirectory({"a": factory, "b": factory}), plan, tmp_path)
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("report.md", "report.html", "summary.json"):
        assert (tmp_path / name).exists()
    assert "1/1 (100%)" in result.output


def test_panel_needs_agents_or_config() -> None:
    result = runner.invoke(app, ["panel", "hello"])
    assert result.exit_code == 2
