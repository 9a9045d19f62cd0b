"""The panel page over the real Letta server of the local stack (``orchestrator serve``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from playwright.async_api import Page, expect

from orchestrator import load_panel
from orchestrator.stack._stack import StackInfo
from orchestrator.testing._modelserver import expected_answer

from ._panel import WAIT_MS, open_panel, shown_run, wait_finished
from .conftest import ARTIFACTS, ROOT, Server, start_server, stop_server

pytestmark = [pytest.mark.letta, pytest.mark.browser, pytest.mark.slow]

PANEL = ROOT / "configs" / "panel.yaml"
ORCHESTRATOR = [str(Path(sys.executable).parent / "orchestrator")]


@pytest.fixture(scope="module")
def letta_server(letta_stack: StackInfo) -> Iterator[Server]:
    """``orchestrator serve`` over the stack's Letta server, from the project root."""
    running = start_server(
        [*ORCHESTRATOR, "serve"],
        cwd=ROOT,
        log=ARTIFACTS / "server-letta.log",
        env={"LETTA_BASE_URL": letta_stack.base_url},
    )
    yield running
    stop_server(running)


async def test_panel_preset_fans_out_to_three_letta_agents(
    page: Page, letta_stack: StackInfo, letta_server: Server
) -> None:
    # The panel's agents exist on the server (created by the first sync, then reused).
    synced = await anyio.run_process(
        [*ORCHESTRATOR, "agents", "sync", str(PANEL), "--base-url", letta_stack.base_url, "--json"]
    )
    assert json.loads(synced.stdout)["counts"]["missing"] == 0
    panel = load_panel(PANEL)
    prompt = panel.prompts[0]

    await open_panel(page, letta_server.url)
    await page.locator("#preset").select_option("panel")
    await page.locator("#prompt").fill(prompt)
    await page.locator("#prompt").press("Enter")
    await wait_finished(page)

    await shown_run(page).get_by_role("tab", name="Live").click()
    for agent in panel.agents:
        col = (
            shown_run(page)
            .locator(".column")
            .filter(has=page.locator(".label", has_text=agent.display))
        )
        await expect(col).to_have_attribute("data-status", "done", timeout=WAIT_MS)
        persona = agent.persona_text()
        assert persona is not None
        assert await col.locator(".raw").text_content() == expected_answer(persona, prompt)
