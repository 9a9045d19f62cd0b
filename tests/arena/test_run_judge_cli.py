"""``orchestrator run`` with a ``judge:`` section against the Letta protocol simulator: the
judge's verdicts land in the database and in votes.jsonl, and the commands show them."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from orchestrator.cli import app
from tests.testing._sim_fixtures import SimServer, sim_server, simulator

__all__ = ["sim_server", "simulator"]


def test_run_judges_then_report_and_leaderboard_show_it(
    sim_server: SimServer, tmp_path: Path
) -> None:
    a, b, judge = list(sim_server.sim.agents.values())[:3]
    database = f"sqlite:///{tmp_path / 'state.db'}"
    config = tmp_path / "judged.yaml"
    config.write_text(
        f"agents: [{{id: {a.id}}}, {{id: {b.id}}}]\n"
        "prompts: [Compare two things., And two more.]\n"
        "assertions: [{type: max_chars, value: 100000}]\n"
        f"judge: {{agent: {{id: {judge.id}}}, name: sim, database: '{database}'}}\n"
    )
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["run", str(config), "--out", str(out), "--no-progress", "--base-url", sim_server.base_url],
    )
    assert result.exit_code == 0, result.output
    assert "2 verdicts by judge:sim" in result.output
    votes = [json.loads(line) for line in (out / "votes.jsonl").read_text().splitlines()]
    assert [v["voter"] for v in votes] == ["judge:sim", "judge:sim"]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["grades"][0]["pass"] for r in records)

    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert "leaderboard (2 votes)" in result.output
    assert "2/2" in result.output  # assertions passed per agent

    result = runner.invoke(
        app, ["leaderboard", "--database", database, "--voter", "judge:sim", "--json"]
    )
    assert result.exit_code == 0, result.output
    board = json.loads(result.output)
    assert board["n_votes"] == 2
    assert {row["agent_id"] for row in board["rows"]} == {a.id, b.id}
