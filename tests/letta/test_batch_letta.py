"""Batch runs against the real Letta server of the local stack, through the real CLI.

The scripted model behind Letta makes every answer computable (``expected_answer``), so an
uninterrupted run's results are known without running it.
"""

from __future__ import annotations

import json
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from letta_client import AsyncLetta
from playwright.async_api import Request, async_playwright

from orchestrator.batch._store import read_jsonl
from orchestrator.stack._stack import StackInfo
from orchestrator.testing._modelserver import expected_answer
from tests._chromium import CHROMIUM, CHROMIUM_ARGS
from tests.letta.conftest import CreateAgent

pytestmark = [pytest.mark.letta, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from orchestrator.cli import main; main()"]

PERSONAS = {
    "Alpha": "Alpha. You answer first and briefly.",
    "Bravo": "Bravo. You answer with care.",
    "Charlie": "Charlie. You answer with an example.",
}


async def make_agents(scripted_agent: CreateAgent) -> dict[str, str]:
    """label -> agent id, for the three personas."""
    return {label: await scripted_agent(persona) for label, persona in PERSONAS.items()}


def write_config(path: Path, stack: StackInfo, agents: dict[str, str], **extra: Any) -> Path:
    config = {
        "title": "Letta batch test",
        "letta": {"base_url": stack.base_url},
        "agents": [{"id": agent_id, "label": label} for label, agent_id in agents.items()],
        **extra,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def cli(*args: str) -> tuple[int, str]:
    done = await anyio.run_process([*CLI, *args], check=False, cwd=ROOT)
    return done.returncode, done.stdout.decode() + done.stderr.decode()


def answers(out: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(out / "results.jsonl"))


async def test_batch_of_three_by_three_then_report_in_chromium(
    tmp_path: Path, letta_stack: StackInfo, scripted_agent: CreateAgent
) -> None:
    agents = await make_agents(scripted_agent)
    tag = uuid.uuid4().hex[:8]
    prompts = [f"Question {n} of run {tag}?" for n in (1, 2, 3)]
    config = write_config(
        tmp_path / "batch.yaml",
        letta_stack,
        agents,
        prompts=prompts,
        limits={"fanouts": 3, "streams": 9},
        options={"timeout_s": 100},
    )
    out = tmp_path / "results"
    code, output = await cli("run", str(config), "--out", str(out), "--no-progress")
    assert code == 0, output
    rows = answers(out)
    assert len(rows) == 9
    expected = {
        (row["prompt"], row["label"]): expected_answer(PERSONAS[row["label"]], row["prompt"])
        for row in rows
    }
    assert {(r["prompt"], r["label"]) for r in rows} == {
        (p, label) for p in prompts for label in PERSONAS
    }
    for row in rows:
        assert row["status"] == "done", row
        assert row["text"] == expected[(row["prompt"], row["label"])]
        assert row["metrics"]["ttft_s"] > 0
        assert row["usage"]["total_tokens"] > 0
        assert row["run_id"]

    code, output = await cli("report", str(out))
    assert code == 0, output
    summary = json.loads((out / "summary.json").read_text())
    assert [a["succeeded"] for a in summary["agents"]] == [3, 3, 3]

    outside: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()

            def watch(request: Request) -> None:
                if not request.url.startswith("file://"):
                    outside.append(request.url)

            page.on("request", watch)
            await page.goto((out / "report.html").as_uri())
            cells = page.locator("td.cell[data-status=done] .answer")
            assert await cells.count() == 9
            shown = sorted(await cells.all_inner_texts())
            assert shown == sorted(expected.values())
            headers = await page.locator("#answers thead th[data-agent]").all_inner_texts()
            assert headers == list(PERSONAS)
        finally:
            await browser.close()
    assert outside == []  # standalone: no external assets


async def test_rate_limited_twice_then_success(
    tmp_path: Path, letta_stack: StackInfo, scripted_agent: CreateAgent
) -> None:
    agent_id = await scripted_agent(PERSONAS["Alpha"])
    tag = uuid.uuid4().hex[:8]
    # Twice: the model client inside Letta retries that much itself. Five times: more than
    # it absorbs, so the run fails on the Letta side and only our retry makes it succeed.
    twice = f"Retry me {tag} [[fail=429@0 fail_times=2]]"
    five = f"Retry me harder {tag} [[fail=429@0 fail_times=5]]"
    config = write_config(
        tmp_path / "retry.yaml",
        letta_stack,
        {"Alpha": agent_id},
        prompts=[twice, five],
        retry={"attempts": 4, "backoff_s": 0.2, "max_backoff_s": 1},
    )
    out = tmp_path / "results"
    code, output = await cli("run", str(config), "--out", str(out), "--no-progress")
    assert code == 0, output
    rows = {r["prompt"]: r for r in answers(out)}
    assert set(rows) == {twice, five}
    for prompt, row in rows.items():
        assert row["status"] == "done", row
        assert row["text"] == expected_answer(PERSONAS["Alpha"], prompt)
    assert rows[five]["attempts"] >= 2  # failed on the server at first, then retried by us


async def test_sigint_mid_run_then_resume(
    tmp_path: Path,
    letta_stack: StackInfo,
    scripted_agent: CreateAgent,
    letta_client: AsyncLetta,
) -> None:
    agents = await make_agents(scripted_agent)
    tag = uuid.uuid4().hex[:8]
    # Slow answers (about 4 s of streaming each) so the second fan-out is caught mid-stream.
    prompts = [f"Slow question {n} of {tag} [[tps=4 words=16]]" for n in (1, 2, 3)]
    config = write_config(
        tmp_path / "batch.yaml",
        letta_stack,
        agents,
        prompts=prompts,
        limits={"fanouts": 1, "streams": 3},
        output={"events": True},
    )
    out = tmp_path / "results"
    events = out / "events"

    def streaming_logs() -> list[Path]:
        """Event logs of fan-outs that have streamed text but not finished."""
        if not events.exists():
            return []
        found = []
        for log in events.glob("*.jsonl"):
            kinds = [e.get("type") for e in read_jsonl(log)]
            if "content" in kinds and "fanout_done" not in kinds:
                found.append(log)
        return found

    async with await anyio.open_process(
        [*CLI, "run", str(config), "--out", str(out), "--no-progress"], cwd=ROOT
    ) as process:
        with anyio.fail_after(90):
            # Another process writes these files: polling them (with a deadline) is the way.
            # The first fan-out is finished (one at a time) and the second streams text.
            while not (len(answers(out)) >= 3 and streaming_logs()):  # noqa: ASYNC110
                await anyio.sleep(0.2)
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(30):
            code = await process.wait()
        assert process.stderr is not None
        stderr = b"".join([chunk async for chunk in process.stderr]).decode()
    assert code == 130, stderr
    assert "Resume with" in stderr

    # Every file is whole JSON lines; only finished pairs were written.
    for path in [out / "results.jsonl", *events.glob("*.jsonl")]:
        raw = path.read_text()
        assert raw.endswith("\n")
        for line in raw.splitlines():
            json.loads(line)
    first = answers(out)
    assert 3 <= len(first) < 9
    assert all(r["status"] == "done" for r in first)

    # The runs in flight were cancelled on the Letta server.
    interrupted_runs = []
    for log in events.glob("*.jsonl"):
        logged = list(read_jsonl(log))
        finished = {e["agent_id"] for e in logged if e["type"] == "agent_done"}
        interrupted_runs += [
            e["run_id"]
            for e in logged
            if e["type"] == "agent_start" and e.get("run_id") and e["agent_id"] not in finished
        ]
    assert interrupted_runs
    for run_id in interrupted_runs:
        with anyio.fail_after(20):
            while (status := (await letta_client.runs.retrieve(run_id)).status) != "cancelled":
                assert status in ("created", "running"), status
                await anyio.sleep(0.2)  # the server records the cancellation

    code, output = await cli("run", str(config), "--out", str(out), "--no-progress")
    assert code == 0, output
    final = answers(out)
    keys = [r["key"] for r in final]
    assert len(keys) == len(set(keys)) == 9  # no pair done twice
    assert {(r["prompt"], r["label"], r["text"]) for r in final} == {
        (p, label, expected_answer(PERSONAS[label], p)) for p in prompts for label in PERSONAS
    }
