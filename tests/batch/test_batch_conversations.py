"""Batch conversations (fresh by default, shared on request) and agents x models, over the
Letta protocol simulator with the history directive: a pair that saw another pair's turns
answers with more than one user turn, so these tests fail when isolation breaks."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from orchestrator import ConfigError
from orchestrator.batch import BatchRunner, load_batch, read_jsonl
from orchestrator.letta import LettaDirectory
from orchestrator.report import build_report, write_report
from orchestrator.testing._modelserver import expected_history_answer
from orchestrator.testing._simulator import Simulator
from tests.testing._sim_fixtures import SimServer, sim_server, simulator

__all__ = ["sim_server", "simulator"]

pytestmark = pytest.mark.anyio

PROMPTS = """\
prompts:
  - {id: p1, text: "One [[history]]"}
  - {id: p2, text: "Two [[history]]"}
  - {id: p3, text: "Three [[history]]"}
  - {id: p4, text: "Four [[history]]"}
"""


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "batch.yaml"
    path.write_text(textwrap.dedent(body) + PROMPTS)
    return path


async def _run(sim_server: SimServer, path: Path, out: Path) -> list[dict[str, object]]:
    batch = load_batch(path)
    async with LettaDirectory(base_url=sim_server.base_url, connect_retries=0) as directory:
        summary = await BatchRunner(directory, batch.plan, out).run()
    assert summary.ok, summary.failures
    return list(read_jsonl(out / "results.jsonl"))


def _persona(sim: Simulator, name: str) -> str:
    return next(a.persona for a in sim.agents.values() if a.name == name)


async def test_fresh_is_the_default_and_every_pair_sees_one_user_turn(
    sim_server: SimServer, tmp_path: Path
) -> None:
    sim = sim_server.sim
    path = _config(
        tmp_path,
        """\
        agents: [{name: sim-0}, {name: sim-1}]
        repeats: 2
        limits: {fanouts: 2, streams: 4}
        """,
    )
    records = await _run(sim_server, path, tmp_path / "out")
    assert len(records) == 4 * 2 * 2
    for record in records:
        assert record["text"] == expected_history_answer(
            _persona(sim, str(record["agent"])), 1, "scripted"
        )
        assert str(record["conversation_id"]).startswith("conv-")
    assert len({r["conversation_id"] for r in records}) == len(records)
    # Deleted afterwards (keep_conversations: false), and the default ones never used.
    assert sim.conversations == {}
    assert all(run.conversation_id is not None for run in sim.runs.values())


async def test_fresh_conversations_are_kept_on_request(
    sim_server: SimServer, tmp_path: Path
) -> None:
    path = _config(
        tmp_path,
        """\
        agents: [{name: sim-0}]
        conversation: fresh
        keep_conversations: true
        """,
    )
    records = await _run(sim_server, path, tmp_path / "out")
    assert {str(r["conversation_id"]) for r in records} == set(sim_server.sim.conversations)


async def test_shared_runs_each_agents_pairs_one_at_a_time_in_file_order(
    sim_server: SimServer, tmp_path: Path
) -> None:
    sim = sim_server.sim
    path = _config(
        tmp_path,
        """\
        agents: [{name: sim-0}, {name: sim-1}]
        conversation: shared
        limits: {fanouts: 2, streams: 4}
        """,
    )
    records = await _run(sim_server, path, tmp_path / "out")
    order = ["p1", "p2", "p3", "p4"]
    for record in records:
        turns = order.index(str(record["prompt_id"])) + 1
        assert record["text"] == expected_history_answer(
            _persona(sim, str(record["agent"])), turns, "scripted"
        )
        assert record["conversation_id"] is None
    assert all(run.conversation_id is None for run in sim.runs.values())


async def test_one_agent_with_two_models_gives_two_columns_and_the_report_shows_them(
    sim_server: SimServer, tmp_path: Path
) -> None:
    sim = sim_server.sim
    path = _config(
        tmp_path,
        """\
        agents:
          - {name: sim-0, model: openai-proxy/m1}
          - {name: sim-0, model: openai-proxy/m2}
          - {name: sim-1, label: plain}
        limits: {fanouts: 2, streams: 6}
        """,
    )
    out = tmp_path / "out"
    records = await _run(sim_server, path, out)
    persona = _persona(sim, "sim-0")
    by_agent: dict[str, set[object]] = {}
    for record in records:
        by_agent.setdefault(str(record["agent"]), set()).add(record["text"])
    assert by_agent["sim-0@openai-proxy/m1"] == {expected_history_answer(persona, 1, "m1")}
    assert by_agent["sim-0@openai-proxy/m2"] == {expected_history_answer(persona, 1, "m2")}
    labels = {str(r["agent"]): (r["label"], r["model"]) for r in records}
    assert labels == {
        "sim-0@openai-proxy/m1": ("sim-0 (openai-proxy/m1)", "openai-proxy/m1"),
        "sim-0@openai-proxy/m2": ("sim-0 (openai-proxy/m2)", "openai-proxy/m2"),
        "sim-1": ("plain", None),
    }
    report = build_report(out)
    assert [(c.label, c.model) for c in report.columns] == [
        ("sim-0 (openai-proxy/m1)", "openai-proxy/m1"),
        ("sim-0 (openai-proxy/m2)", "openai-proxy/m2"),
        ("plain", None),
    ]
    write_report(out)
    markdown = (out / "report.md").read_text()
    assert "| sim-0 (openai-proxy/m1) | openai-proxy/m1 |" in markdown
    assert "<br>`openai-proxy/m2`" in markdown
    assert '<div class="model">openai-proxy/m1</div>' in (out / "report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert [a["model"] for a in summary["agents"]] == ["openai-proxy/m1", "openai-proxy/m2", None]


def test_the_same_agent_and_model_twice_is_refused(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        """\
        agents:
          - {name: sim-0, model: openai-proxy/m1}
          - {name: sim-0, model: openai-proxy/m1, label: again}
        """,
    )
    with pytest.raises(ConfigError, match="duplicate agent 'sim-0'"):
        load_batch(path)


def test_an_unknown_conversation_mode_names_the_key(tmp_path: Path) -> None:
    path = _config(tmp_path, "agents: [{name: sim-0}]\nconversation: sometimes\n")
    with pytest.raises(ConfigError, match="conversation"):
        load_batch(path)
