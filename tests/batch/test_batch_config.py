"""Batch YAML configs: the examples load; every error names file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestrator import ConfigError
from orchestrator.batch._config import load_batch

ROOT = Path(__file__).resolve().parents[2]

AGENTS = """\
agents:
  - name: a-one
  - name: a-two
"""


def write(tmp_path: Path, text: str, name: str = "batch.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_batch(path)
    return str(info.value)


def test_example_configs_load() -> None:
    batch = load_batch(ROOT / "configs" / "batch.yaml")
    assert len(batch.plan.agents) == 3
    assert batch.plan.total_pairs == len(batch.plan.prompts) * 3
    templated = load_batch(ROOT / "configs" / "batch-templated.yaml")
    first = templated.plan.prompts[0]
    assert first.prompt_id == "rust"
    assert first.text == (
        "In three sentences, what should a backend team know about "
        "rewriting a Python service in Rust?"
    )
    assert templated.plan.repeats == 2


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        AGENTS
        + """\
prompts: [hello]
limits:
  fanouts: 2
  stream: 4
""",
    )
    message = error_of(path)
    assert message == f"{path}:7: limits.stream: unknown key (did you mean 'streams'?)"


def test_missing_agents(tmp_path: Path) -> None:
    path = write(tmp_path, "title: nobody\nprompts: [hello]\n")
    assert error_of(path) == f"{path}:1: agents: missing required key"


def test_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, AGENTS + "prompts: [hello]\nrepeats: many\n")
    message = error_of(path)
    assert message.startswith(f"{path}:5: repeats: ")
    assert "integer" in message


def test_too_few_streams_for_the_agents(tmp_path: Path) -> None:
    path = write(tmp_path, AGENTS + "prompts: [hi]\nlimits:\n  streams: 1\n")
    message = error_of(path)
    assert message.startswith(f"{path}:6: limits.streams: must be at least the number of agents")


def test_prompts_and_prompts_file_exclude_each_other(tmp_path: Path) -> None:
    path = write(tmp_path, AGENTS)
    assert "exactly one" in error_of(path)


def test_bad_prompts_file_line_names_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"id": "a", "topic": "x"}\n{"id": "b", "topic": \n')
    path = write(tmp_path, AGENTS + "template: 'About {topic}'\nprompts_file: p.jsonl\n")
    message = error_of(path)
    assert message.startswith(f"{tmp_path / 'p.jsonl'}:2: (line): not valid JSON")


def test_prompts_file_row_lacking_a_template_variable(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("id,topic\na,rust\nb,go\n")
    path = write(tmp_path, AGENTS + "template: '{topic} for {audience}'\nprompts_file: p.csv\n")
    assert error_of(path) == (
        f"{tmp_path / 'p.csv'}:2: audience: template variable 'audience' has no value"
    )


def test_missing_prompts_file(tmp_path: Path) -> None:
    path = write(tmp_path, AGENTS + "prompts_file: nowhere.jsonl\n")
    message = error_of(path)
    assert message.startswith(f"{path}:4: prompts_file: cannot read")


def test_inline_prompt_lacking_a_variable(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        AGENTS
        + """\
template: "Say {word}"
prompts:
  - vars: {word: hi}
  - vars: {other: x}
""",
    )
    assert error_of(path) == f"{path}:7: prompts[1].word: template variable 'word' has no value"


def test_malformed_template(tmp_path: Path) -> None:
    path = write(tmp_path, AGENTS + "template: 'Say {0}'\nprompts: [a]\n")
    assert error_of(path).startswith(f"{path}:4: template: invalid template")


def test_csv_prompts_and_variables(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("id,text,tone\nx,Hello there,warm\ny,Bye,\n")
    path = write(tmp_path, AGENTS + "prompts_file: p.csv\nvariables: {tone: dry}\n")
    plan = load_batch(path).plan
    assert [(p.prompt_id, p.text) for p in plan.prompts] == [("x", "Hello there"), ("y", "Bye")]
    assert plan.prompts[0].variables["tone"] == "warm"


def test_quorum_larger_than_the_panel(tmp_path: Path) -> None:
    path = write(tmp_path, AGENTS + "prompts: [a]\noptions:\n  policy: quorum:3\n")
    message = error_of(path)
    assert message.startswith(f"{path}:6: options.policy:")
    assert "needs 3 agents" in message
