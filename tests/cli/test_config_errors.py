"""Issue 12, finding 4: every command that reads a config exits 2 on a hostile file.

The message names the file and the line; nothing is started and no traceback is printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.batch._config import MAX_PROMPTS_FILE_BYTES
from orchestrator.cli import app

runner = CliRunner()


def billion_laughs() -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 10)]
    return "\n".join([*lines, "agents: [{name: x}]", "prompts: [hi]"]) + "\n"


HOSTILE = {
    "laughs": (billion_laughs(), ":6: a5[", "alias *a4 expands the document beyond"),
    "deep": ("agents: " + "[" * 20_000 + "]" * 20_000 + "\n", ":1: ", "nest"),
    "surrogate": ('agents:\n  - name: x\n    label: "\\ud800"\n', ":3: agents[0].label", "Unicode"),
    "escape": ('agents:\n  - name: "x\\e[2J"\n', ":2: agents[0].name", "U+001B"),
}

COMMANDS = {
    "run": lambda path: ["run", str(path), "--no-progress", "--out", str(path.parent / "out")],
    "panel": lambda path: ["panel", "hello", "--config", str(path)],
    "agents sync": lambda path: ["agents", "sync", str(path)],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_config_exits_2_with_file_and_line(
    tmp_path: Path, command: str, case: str
) -> None:
    text, where, problem = HOSTILE[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    result = runner.invoke(app, COMMANDS[command](path))
    assert result.exit_code == 2, result.output
    assert f"{path}{where}" in result.output
    assert problem in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_an_oversized_prompts_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_bytes(b" " * (MAX_PROMPTS_FILE_BYTES + 1))
    config = tmp_path / "batch.yaml"
    config.write_text("agents: [{name: a}]\nprompts_file: p.jsonl\n")
    result = runner.invoke(app, ["run", str(config), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert f"{tmp_path / 'p.jsonl'}: prompts file is larger than the limit" in result.output
