"""LettaDirectory, ``agents sync`` and the unreachable server, against the real stack."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import pytest
from letta_client import AsyncLetta
from typer.testing import CliRunner

from orchestrator import (
    AgentRef,
    FailedSource,
    LettaDirectory,
    LettaSource,
    collect,
    load_panel,
)
from orchestrator.cli import app
from orchestrator.stack._stack import StackInfo
from orchestrator.testing._modelserver import expected_answer
from tests.letta.conftest import EMBEDDING, SCRIPTED_MODEL, CreateAgent

PANEL = """\
title: test panel
agents:
  - name: {prefix}-optimist
    label: Optimist
    model: {model}
    embedding: {embedding}
    persona: Optimist. You look for what could go right.
  - name: {prefix}-skeptic
    label: Skeptic
    model: {model}
    embedding: {embedding}
    persona: Skeptic. You question every assumption.
  - name: {prefix}-historian
    label: Historian
    model: {model}
    embedding: {embedding}
    persona: Historian. You answer with precedent.
"""


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_server_every_agent_ends_unavailable_after_bounded_retries() -> None:
    client = AsyncLetta(base_url=f"http://127.0.0.1:{closed_port()}", max_retries=0)
    try:
        sources = [
            LettaSource(client, f"agent-{n}", connect_retries=2, retry_initial_s=0.01)
            for n in range(3)
        ]
        result = await collect(sources, "hello")
    finally:
        await client.close()
    for source in sources:
        agent = result.agents[source.agent_id]
        assert agent.state == "error"
        assert agent.error is not None
        assert agent.error.code == "unavailable"
        assert agent.error.retryable is True
        assert source.attempts == 3  # the first try and two retries, no more
        assert source.cancelled_runs == []


async def test_unreachable_server_names_resolve_to_unavailable_sources() -> None:
    async with LettaDirectory(
        base_url=f"http://127.0.0.1:{closed_port()}", connect_retries=1, retry_initial_s=0.01
    ) as directory:
        sources = await directory.sources([AgentRef(name="a"), AgentRef(name="b", label="B")])
    assert all(isinstance(s, FailedSource) for s in sources)
    result = await collect(sources, "hello")
    assert [(a.error.code, a.error.retryable) for a in result.agents.values() if a.error] == [
        ("unavailable", True),
        ("unavailable", True),
    ]
    assert result.agents["b"].label == "B"


@pytest.mark.letta
async def test_directory_resolves_names_and_fails_unknown_ones(
    letta_stack: StackInfo, letta_client: AsyncLetta, scripted_agent: CreateAgent
) -> None:
    persona = "Cartographer. You describe places."
    agent_id = await scripted_agent(persona)
    name = (await letta_client.agents.retrieve(agent_id)).name
    directory = LettaDirectory(letta_client)
    sources = await directory.sources(
        [AgentRef(name=name, label="Maps"), AgentRef(name=f"nobody-{uuid.uuid4().hex}")]
    )
    listed = {a.agent_id: a for a in await directory.list_agents()}
    await directory.aclose()
    await directory.aclose()  # idempotent, and it leaves a client it did not create open
    assert listed[agent_id].name == name
    assert listed[agent_id].model == SCRIPTED_MODEL

    assert isinstance(sources[0], LettaSource)
    assert sources[0].agent_id == agent_id
    assert sources[0].label == "Maps"
    result = await collect(sources, "Where are we? [[words=5]]")
    assert result.agents[agent_id].text == expected_answer(persona, "Where are we? [[words=5]]")
    missing = result.agents[sources[1].agent_id]
    assert missing.error is not None
    assert missing.error.code == "agent_not_found"


@pytest.mark.letta
async def test_sync_creates_then_reuses_and_agents_answer_in_character(
    letta_stack: StackInfo, letta_client: AsyncLetta, tmp_path: Path
) -> None:
    prefix = f"sync-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "panel.yaml"
    config.write_text(PANEL.format(prefix=prefix, model=SCRIPTED_MODEL, embedding=EMBEDDING))
    panel = load_panel(config)
    async with LettaDirectory(base_url=letta_stack.base_url) as directory:
        first = await directory.sync(panel.agents)
        second = await directory.sync(panel.agents)
        try:
            assert [r.action for r in first] == ["created"] * 3
            assert [r.action for r in second] == ["reused"] * 3
            assert [r.agent_id for r in first] == [r.agent_id for r in second]
            named = [a async for a in letta_client.agents.list(name=f"{prefix}-skeptic")]
            assert len(named) == 1  # sync twice, still one agent of that name

            sources = await directory.sources(panel.refs())
            prompt = "Is it going to rain? [[words=7]]"
            result = await collect(sources, prompt)
            for spec, sync_result in zip(panel.agents, first, strict=True):
                assert sync_result.agent_id is not None
                agent = result.agents[sync_result.agent_id]
                assert agent.label == spec.label
                assert agent.text == expected_answer(spec.persona_text() or "", prompt)
        finally:
            for r in first:
                if r.agent_id:
                    await letta_client.agents.delete(r.agent_id)


@pytest.mark.letta
def test_agents_cli_sync_reports_created_then_reused(
    letta_stack: StackInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"cli-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "panel.yaml"
    config.write_text(PANEL.format(prefix=prefix, model=SCRIPTED_MODEL, embedding=EMBEDDING))
    monkeypatch.setenv("LETTA_BASE_URL", letta_stack.base_url)
    runner = CliRunner()

    first = runner.invoke(app, ["agents", "sync", str(config)])
    assert first.exit_code == 0, first.output
    assert "created 3, reused 0" in first.output
    second = runner.invoke(app, ["agents", "sync", str(config), "--json"])
    assert second.exit_code == 0, second.output
    report = json.loads(second.output)
    assert report["counts"] == {"created": 0, "reused": 3, "found": 0, "missing": 0}

    listed = runner.invoke(app, ["agents", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    names = {a["name"]: a["agent_id"] for a in json.loads(listed.output)}
    for row in report["agents"]:
        assert names[row["key"]] == row["agent_id"]

    import anyio

    async def cleanup() -> None:
        async with AsyncLetta(base_url=letta_stack.base_url) as client:
            for row in report["agents"]:
                await client.agents.delete(row["agent_id"])

    anyio.run(cleanup)
