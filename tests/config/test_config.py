"""Config files: the YAML loader's line numbers and the shared models' validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator import AgentRef, ConfigError, LettaConnection, PanelConfig, load_panel
from orchestrator.cli import app
from orchestrator.config._config import ConfigModel, load_config, parse_yaml

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "panel.yaml"
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_panel(path)
    return str(info.value)


def test_shipped_panel_has_three_scripted_agents_with_distinct_personas() -> None:
    panel = load_panel(ROOT / "configs" / "panel.yaml")
    assert len(panel.agents) == 3
    assert all(agent.is_spec for agent in panel.agents)
    assert {agent.model for agent in panel.agents} == {"openai-proxy/scripted"}
    personas = [agent.persona_text() or "" for agent in panel.agents]
    # The scripted model names the answer after the persona's first word: all must differ.
    assert len({p.split()[0] for p in personas}) == 3
    assert [ref.label for ref in panel.refs()] == ["Optimist", "Skeptic", "Historian"]
    assert panel.options.kwargs()["policy"] == "all"


def test_unknown_key_names_file_line_key_and_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "title: t\n"
        "agents:\n"
        "  - name: a\n"
        "    model: m\n"
        "  - name: b\n"
        "    label: B\n"
        "    modle: openai-proxy/scripted\n",
    )
    assert error_of(path) == f"{path}:7: agents[1].modle: unknown key (did you mean 'model'?)"


def test_every_problem_is_reported_sorted_by_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "agents:\n"
        "  - id: agent-1\n"
        "    persona: hi\n"
        "  - label: nameless\n"
        "options:\n"
        "  policy: sometimes\n"
        "  buffer: 0\n",
    )
    lines = error_of(path).splitlines()
    assert lines[0].startswith(f"{path}:2: agents[0]: an agent given by 'id' cannot have spec")
    assert lines[1].startswith(f"{path}:4: agents[1]: an agent needs 'id', 'name'")
    assert lines[2].startswith(f"{path}:6: options.policy: policy must be 'all', 'first'")
    assert lines[3].startswith(f"{path}:7: options.buffer: Input should be greater than")
    assert len(lines) == 4


def test_missing_key_points_at_the_mapping_that_lacks_it(tmp_path: Path) -> None:
    path = write(tmp_path, "title: no agents here\nprompts: [a, b]\n")
    assert error_of(path) == f"{path}:1: agents: missing required key"


def test_duplicates_and_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    dup_key = write(tmp_path, "agents:\n  - name: a\n    name: b\n")
    assert error_of(dup_key) == f"{dup_key}:3: agents[0].name: duplicate key"

    dup_agent = write(tmp_path, "agents:\n  - name: a\n  - name: a\n    label: other\n")
    assert error_of(dup_agent) == f"{dup_agent}:1: agents: duplicate agent 'a'"

    broken = write(tmp_path, "agents:\n  - name: a\n   bad: [\n")
    message = error_of(broken)
    assert message.startswith(f"{broken}:3: invalid YAML")


def test_missing_file_and_empty_agent_list(tmp_path: Path) -> None:
    assert "cannot read config file" in error_of(tmp_path / "nope.yaml")
    empty = write(tmp_path, "agents: []\n")
    assert error_of(empty) == f"{empty}:1: agents: a panel needs at least one agent"


def test_agent_entries_become_refs_by_id_or_name() -> None:
    data, lines = parse_yaml(
        "agents:\n"
        "  - id: agent-123\n"
        "    label: Existing\n"
        "  - name: by-name\n"
        "  - name: spec\n"
        "    model: openai-proxy/scripted\n"
        "    persona: Poet. Rhymes.\n"
        "    blocks:\n"
        "      - {label: style, value: terse}\n"
    )
    panel = PanelConfig.model_validate(data)
    assert panel.refs() == [
        AgentRef(agent_id="agent-123", label="Existing"),
        AgentRef(name="by-name", label="by-name"),
        AgentRef(name="spec", label="spec"),
    ]
    spec = panel.agents[2]
    assert [b.label for b in spec.memory_blocks()] == ["persona", "style"]
    assert spec.persona_text() == "Poet. Rhymes."
    assert lines.line(("agents", 2, "blocks", 0, "value")) == 9
    assert lines.line(("agents", 2, "nothing", "here")) == 5


def test_letta_connection_token_prefers_the_key_then_the_named_env_var(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MY_LETTA_TOKEN", "from-env")
    assert LettaConnection(api_key_env="MY_LETTA_TOKEN").token() == "from-env"
    assert LettaConnection(api_key="inline", api_key_env="MY_LETTA_TOKEN").token() == "inline"
    monkeypatch.delenv("MY_LETTA_TOKEN")
    assert LettaConnection(api_key_env="MY_LETTA_TOKEN").token() is None


def test_load_config_works_for_any_config_model(tmp_path: Path) -> None:
    class Batch(ConfigModel):
        prompts: tuple[str, ...]
        repeats: int = 1

    path = tmp_path / "batch.yaml"
    path.write_text("prompts:\n  - hi\nrepeats: many\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3: repeats: Input should be a valid integer"):
        load_config(path, Batch)
    path.write_text("prompts: [hi, there]\n")
    assert load_config(path, Batch).prompts == ("hi", "there")


def test_agents_cli_sync_names_file_line_and_key_of_a_bad_config(tmp_path: Path) -> None:
    config = write(tmp_path, "agents:\n  - name: a\n    modle: x\n")
    result = CliRunner().invoke(app, ["agents", "sync", str(config)])
    assert result.exit_code == 2
    assert f"{config}:3: agents[0].modle: unknown key (did you mean 'model'?)" in result.output
