"""Blind mode of the panel in real headless Chromium: the names stay hidden until the vote.

The page reads the fan-out through the blind stream only; its columns are "Answer A/B/C"
with opaque ids, in the order the server drew, and no agent id, label or model appears in
the run's DOM outside the answers' own text. After the vote the names are revealed, each on
the column whose answer that agent wrote.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.async_api import Page, expect

from ._agents import PLAIN
from ._panel import WAIT_MS, open_panel, pick, send, shown_run, wait_finished
from .conftest import Server, Watch, csp_violations

pytestmark = pytest.mark.browser

# The run's DOM without the answers themselves (the scripted answers say who wrote them).
_DOM_WITHOUT_ANSWERS = """() => {
  const run = document.querySelector(".run:not([hidden])").cloneNode(true);
  for (const node of run.querySelectorAll(".answer, .raw, .reasoning-text, .chip-body")) {
    node.remove();
  }
  return run.outerHTML;
}"""

NAMES = re.compile(r"alpha|beta|gamma", re.IGNORECASE)


def _owner(text: str) -> str:
    return next(agent for agent, answer in PLAIN.items() if answer.strip() == text.strip())


async def _blind_run(page: Page, server: Server, requests: list[str]) -> None:
    page.on("request", lambda request: requests.append(request.url))
    await open_panel(page, server.url)
    await pick(page, "alpha", "beta", "gamma")
    await page.locator("#blind").check()
    await send(page, "Which colour is the sky, and why?")
    await wait_finished(page)


async def test_blind_mode_hides_the_names_until_the_vote(
    page: Page, server: Server, watch: Watch
) -> None:
    since = time.time()
    requests: list[str] = []
    await _blind_run(page, server, requests)
    run = shown_run(page)
    columns = run.locator(".column")
    await expect(columns).to_have_count(3)
    assert await columns.locator(".label").all_inner_texts() == ["Answer A", "Answer B", "Answer C"]
    ids = [await c.get_attribute("data-agent-id") for c in await columns.all()]
    assert all(i is not None and re.fullmatch(r"b[0-9a-f]{12}", i) for i in ids), ids
    # Nothing outside the answers names an agent, and the plain stream was never read.
    dom = await page.evaluate(_DOM_WITHOUT_ANSWERS)
    assert NAMES.findall(dom) == []
    assert [u for u in requests if "/events" in u and "/blind/events" not in u] == []
    assert any("/blind/events" in u for u in requests)
    # Per-agent Stop would send the opaque id: blind mode offers Stop all only.
    await expect(run.locator(".column .stop").first).to_be_hidden()

    # Vote for "Answer B"; its answer's author wins.
    answers = {
        i: (await run.locator(f'.column[data-agent-id="{i}"] .raw').text_content() or "")
        for i in ids
    }
    winner = _owner(answers[ids[1]])
    await run.get_by_role("button", name="Answer B is best").click()
    await expect(run).to_have_attribute("data-revealed", "true", timeout=WAIT_MS)

    # Every column now names the agent that wrote its answer.
    labels = await run.locator(".column .label").all_inner_texts()
    for column_id, label in zip(ids, labels, strict=True):
        assert _owner(answers[column_id]) in label.lower(), (label, answers[column_id][:30])
    assert labels[1].startswith("Answer B: ")
    cards = await run.locator(".answer-card .label").all_inner_texts()
    assert sorted(cards) == sorted(labels)
    await expect(run.locator(".vote-buttons button").first).to_be_disabled()

    async with httpx.AsyncClient(base_url=server.url) as client:
        board = (await client.get("/v1/leaderboard", params={"since": since})).json()
    assert board["n_votes"] == 1
    assert board["rows"][0]["agent_id"] == winner
    assert watch.console_errors == []
    assert await csp_violations(page) == []


async def test_a_full_ranking_by_drag(page: Page, server: Server) -> None:
    since = time.time()
    await _blind_run(page, server, [])
    run = shown_run(page)
    await run.locator(".vote-rank summary").click()
    items = run.locator(".vote-ranking li")
    await expect(items).to_have_count(3)
    # Drag "Answer C" to the top, then move "Answer A" down with the keyboard-friendly arrow.
    await items.nth(2).drag_to(items.nth(0), target_position={"x": 5, "y": 2})
    assert await items.locator(".rank-label").all_inner_texts() == [
        "Answer C",
        "Answer A",
        "Answer B",
    ]
    await run.get_by_role("button", name="Move Answer A down").click()
    assert await items.locator(".rank-label").all_inner_texts() == [
        "Answer C",
        "Answer B",
        "Answer A",
    ]
    order = [await item.get_attribute("data-column") for item in await items.all()]
    texts = {
        column_id: await run.locator(f'.column[data-agent-id="{column_id}"] .raw').text_content()
        for column_id in order
    }
    expected = [_owner(texts[c] or "") for c in order]
    await run.get_by_role("button", name="Vote this ranking").click()
    await expect(run).to_have_attribute("data-revealed", "true", timeout=WAIT_MS)

    async with httpx.AsyncClient(base_url=server.url) as client:
        board = (await client.get("/v1/leaderboard", params={"since": since})).json()
    assert [row["agent_id"] for row in board["rows"]] == expected
    assert [(r["wins"], r["losses"]) for r in board["rows"]] == [(2, 0), (1, 1), (0, 2)]


async def test_the_leaderboard_view(page: Page, server: Server) -> None:
    await _blind_run(page, server, [])
    await shown_run(page).get_by_role("button", name="Tie").click()
    await expect(shown_run(page)).to_have_attribute("data-revealed", "true", timeout=WAIT_MS)
    await page.locator("#show-leaderboard").click()
    table = page.locator("#leaderboard table.leaderboard")
    await expect(table).to_be_visible(timeout=WAIT_MS)
    names = await table.locator("tbody th").all_inner_texts()
    assert {"alpha", "beta", "gamma"} <= {n.lower() for n in names}
