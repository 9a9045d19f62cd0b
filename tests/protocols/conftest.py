"""Fixtures for the frontend protocol tests: the real npm clients against a real server.

``@ag-ui/client`` and ``ai`` (exact versions in ``package.json`` and its lock file) are
installed by ``scripts/install-node-clients.sh`` on first use; ``.mjs`` scripts here drive
them and print what they saw as JSON. The server is ``orchestrator serve`` in a child
process (real uvicorn): over scripted agents (fast, no Letta), or over the Letta stack.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator import Event
from orchestrator.stack._stack import StackInfo
from tests._servers import ROOT, SpawnedServer, spawn_server

# The Letta stack's fixtures, and its hook that brings a cold stack up once after
# collection (outside any per-test timeout), also when only tests/protocols is collected.
from tests.letta.conftest import letta_client as letta_client
from tests.letta.conftest import letta_stack as letta_stack
from tests.letta.conftest import pytest_collection_finish as pytest_collection_finish
from tests.letta.conftest import scripted_agent as scripted_agent

HERE = Path(__file__).resolve().parent
ORCHESTRATOR = str(Path(sys.executable).parent / "orchestrator")
PRESET = "agents: [{id: alpha, label: A}, {id: beta, label: B}]\nprompts: [Hi]\n"


@pytest.fixture(scope="session")
def node_clients() -> Path:
    """The folder of the node scripts, with their npm packages installed."""
    subprocess.run(["bash", str(ROOT / "scripts" / "install-node-clients.sh")], check=True)
    return HERE


def run_node(script: str, config: dict[str, Any], timeout_s: float = 90) -> dict[str, Any]:
    """Run ``script`` (in this folder) with ``config``; its JSON output."""
    done = subprocess.run(
        ["node", str(HERE / script), json.dumps(config)],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, f"{script} failed ({done.returncode}): {done.stderr[-3000:]}"
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def sse_texts(base_url: str, fanout_id: str) -> dict[str, str]:
    """Each agent's answer as our own SSE stream of the fan-out has it."""
    texts: dict[str, str] = defaultdict(str)
    with httpx.stream("GET", f"{base_url}/v1/fanouts/{fanout_id}/events", timeout=30) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = Event.from_json(line[6:])
                if event.type == "content" and event.agent_id is not None:
                    texts[event.agent_id] += event.delta
    return dict(texts)


def _serve(argv: list[str], cwd: Path, log: Path) -> Iterator[SpawnedServer]:
    server = spawn_server(
        [ORCHESTRATOR, "serve", *argv, "--log-level", "warning"], cwd=cwd, log=log
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def scripted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpawnedServer]:
    """``orchestrator serve --scripted`` (tests/api/scripted.py), with one preset ``duo``."""
    cwd = tmp_path_factory.mktemp("scripted")
    (cwd / "configs").mkdir()
    (cwd / "configs" / "duo.yaml").write_text(PRESET)
    yield from _serve(["--scripted", "tests.api.scripted:directory"], cwd, cwd / "server.log")


@pytest.fixture(scope="module")
def letta_server(
    letta_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SpawnedServer]:
    """``orchestrator serve`` over the Letta stack, with its own sessions database."""
    cwd = tmp_path_factory.mktemp("letta")
    argv = ["--letta-base-url", letta_stack.base_url, "--database-url"]
    yield from _serve([*argv, f"sqlite:///{cwd / 'state.db'}"], cwd, cwd / "server.log")
