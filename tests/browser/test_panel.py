"""The panel page in real headless Chromium against a real uvicorn serving scripted agents."""

from __future__ import annotations

import json

import anyio
import pytest
from playwright.async_api import Page, expect

from ._agents import EXPECTED, PLAIN
from ._panel import (
    WAIT_MS,
    column,
    open_panel,
    pick,
    raw_text,
    send,
    shown_run,
    wait_finished,
    wait_for_text,
    wait_status,
)
from .conftest import ARTIFACTS, Server, Watch, csp_violations

pytestmark = pytest.mark.browser


async def test_three_agents_stream_to_their_exact_text(
    page: Page, server: Server, watch: Watch
) -> None:
    await open_panel(page, server.url)
    await pick(page, "alpha", "beta", "gamma")
    await send(page, "Why is the sky blue?")

    for agent_id, text in PLAIN.items():
        await wait_status(page, agent_id, "done")
        assert await raw_text(page, agent_id) == text
    await wait_finished(page)

    # The comparison view replaces the columns: answers side by side and the figures.
    compare = shown_run(page).locator(".compare")
    await expect(compare).to_be_visible()
    for agent_id, text in PLAIN.items():
        card = compare.locator(f'.answer-card[data-agent-id="{agent_id}"] .answer')
        assert (await card.inner_text()).strip() == text.strip()
    rows = compare.locator("table.metrics tbody tr")
    await expect(rows).to_have_count(3)
    for metric in ("ttft", "rate", "duration", "tokens"):
        best = compare.locator(f'td.best[data-metric="{metric}"]')
        assert await best.count() >= 1, metric
    async with page.expect_download() as download_info:
        await compare.get_by_role("button", name="Export JSON").click()
    download = await download_info.value
    exported = json.loads(await anyio.Path(await download.path()).read_text())
    assert {a["agent_id"]: a["text"] for a in exported["agents"]} == PLAIN
    assert exported["prompt"] == "Why is the sky blue?"

    # The live figures were filled in too.
    await shown_run(page).get_by_role("tab", name="Live").click()
    ttft = await column(page, "alpha").locator('[data-metric="ttft"]').inner_text()
    assert ttft.endswith(" s"), ttft

    assert watch.dialogs == []
    assert watch.console_errors == []
    assert await csp_violations(page) == []


async def test_stop_one_column_while_the_others_complete(page: Page, server: Server) -> None:
    await open_panel(page, server.url)
    await pick(page, "steady-1", "steady-2", "slow")
    await send(page, "Count for me.")
    await wait_for_text(page, "slow", 20)
    await wait_status(page, "slow", "streaming")

    await column(page, "slow").get_by_role("button", name="Stop slow").click()

    await wait_status(page, "slow", "cancelled")
    await expect(column(page, "slow").locator(".status")).to_have_text("cancelled (user)")
    await expect(column(page, "slow").locator(".problem")).to_have_text("Cancelled: user")
    for agent_id in ("steady-1", "steady-2"):
        await wait_status(page, agent_id, "done")
        assert await raw_text(page, agent_id) == EXPECTED[agent_id]
    await wait_finished(page)
    stopped = await raw_text(page, "slow")
    assert 0 < len(stopped) < len("slow " * 5000)


async def test_stop_all_with_escape_and_history(page: Page, server: Server) -> None:
    await open_panel(page, server.url)
    await pick(page, "alpha")
    await send(page, "First question")
    await wait_finished(page)

    await page.locator('#agents input[data-agent-id="alpha"]').uncheck()
    await pick(page, "slow", "steady-1")
    await send(page, "Second question")
    await wait_for_text(page, "slow", 5)
    await wait_for_text(page, "steady-1", 5)
    await expect(page.locator("#stop-all")).to_be_enabled()
    await page.keyboard.press("Escape")

    await wait_status(page, "slow", "cancelled")
    await wait_status(page, "steady-1", "cancelled")
    await wait_finished(page)
    await expect(page.locator("#stop-all")).to_be_disabled()

    # History: newest first; clicking the older entry shows its answers again.
    items = page.locator("#history li")
    await expect(items).to_have_count(2)
    await expect(items.nth(0)).to_contain_text("Second question")
    await expect(items.nth(0)).to_contain_text("2 cancelled")
    await items.nth(1).get_by_role("button").click()
    await expect(shown_run(page).locator(".run-prompt")).to_have_text("First question")
    card = shown_run(page).locator('.answer-card[data-agent-id="alpha"] .answer')
    assert (await card.inner_text()).strip() == PLAIN["alpha"].strip()


async def test_agent_html_and_script_are_shown_as_text_and_never_run(
    page: Page, server: Server, watch: Watch
) -> None:
    await open_panel(page, server.url)
    await pick(page, "xss")
    await send(page, "Say something nasty.")
    await wait_status(page, "xss", "done")
    await wait_finished(page)
    await shown_run(page).get_by_role("tab", name="Live").click()

    answer = column(page, "xss").locator(".answer")
    shown = await answer.inner_text()
    assert "<img src=x onerror=alert(1)>" in shown
    assert "<script>window.__pwned = 'script'; alert(2)</script>" in shown
    assert await raw_text(page, "xss") == EXPECTED["xss"]
    # Nothing the agent wrote became an element that could run script.
    dangerous = "img, script, svg, iframe, [onerror], [onload], a[href^='javascript']"
    assert await shown_run(page).locator(dangerous).count() == 0
    # Reasoning and tool chips are text too.
    await column(page, "xss").locator(".reasoning summary").click()
    await expect(column(page, "xss").locator(".reasoning-text")).to_have_text(
        "<img src=y onerror=alert(6)>"
    )
    chip = column(page, "xss").locator(".chip")
    await expect(chip.locator(".chip-name")).to_have_text("<script>alert(7)</script>")
    await chip.locator("summary").click()
    await expect(chip.locator(".chip-result")).to_have_text("<script>alert(9)</script>")

    assert await page.evaluate("typeof window.__pwned") == "undefined"
    assert watch.dialogs == []
    assert await csp_violations(page) == []


async def test_page_resumes_after_the_server_drops_the_stream(page: Page, server: Server) -> None:
    agents = ("steady-1", "steady-2", "optimist")
    await open_panel(page, server.url)
    await pick(page, *agents)

    await send(page, "Uninterrupted run")
    await wait_finished(page)
    reference = {a: await raw_text(page, a) for a in agents}
    assert reference == {a: EXPECTED[a] for a in agents}

    await send(page, "Interrupted run")
    for agent_id in agents:
        await wait_for_text(page, agent_id, 10)
    partial = {a: await raw_text(page, a) for a in agents}
    assert any(len(partial[a]) < len(EXPECTED[a]) for a in agents), "cut came too late"

    dropped = (await server.post("/_test/cut?hold=1")).json()
    assert dropped["dropped"] >= 1
    connection = page.locator("#connection")
    await expect(connection).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
    await expect(connection).to_contain_text("reconnecting")
    await server.post("/_test/release")

    await wait_finished(page)
    assert {a: await raw_text(page, a) for a in agents} == reference
    assert int(await connection.get_attribute("data-reconnects") or 0) >= 1
    for agent_id in agents:
        assert await column(page, agent_id).get_attribute("data-status") == "done"


async def test_preset_selects_its_agents_and_offers_prompts(page: Page, server: Server) -> None:
    await open_panel(page, server.url)
    options = await page.locator("#preset option").all_inner_texts()
    assert options == [
        "Custom selection",
        "Three scripted agents (3 agents)",
        "Three views (3 agents)",
    ]
    await page.locator("#preset").select_option("trio")
    for agent_id in ("alpha", "beta", "gamma"):
        await expect(page.locator(f'#agents input[data-agent-id="{agent_id}"]')).to_be_checked()
    await page.locator("#suggestions").get_by_role("button", name="Why is the sky blue?").click()
    await expect(page.locator("#prompt")).to_have_value("Why is the sky blue?")
    await page.locator("#send").click()

    await wait_finished(page)
    labels = await shown_run(page).locator(".column .label").all_inner_texts()
    assert labels == ["Alpha", "Beta", "Gamma"]
    for agent_id, text in PLAIN.items():
        assert await raw_text(page, agent_id) == text


async def test_markdown_answers_and_the_comparison_view(page: Page, server: Server) -> None:
    await open_panel(page, server.url)
    await page.locator("#preset").select_option("views")
    await send(page, "Should a small team adopt a monorepo?")
    await wait_finished(page)

    compare = shown_run(page).locator(".compare")
    optimist = compare.locator('.answer-card[data-agent-id="optimist"] .answer')
    await expect(optimist.locator("table tr")).to_have_count(3)
    await expect(optimist.locator("ul > li")).to_have_count(3)
    await expect(optimist.locator("strong")).to_have_text("Yes, with care.")
    skeptic = compare.locator('.answer-card[data-agent-id="skeptic"] .answer')
    await expect(skeptic.locator("ol > li")).to_have_count(3)
    await expect(skeptic.locator("pre code")).to_contain_text("if team_size < 10:")
    historian = compare.locator('.answer-card[data-agent-id="historian"] .answer')
    await expect(historian.locator("blockquote")).to_have_count(1)
    for agent_id in ("optimist", "skeptic", "historian"):
        assert await raw_text(page, agent_id) == EXPECTED[agent_id]

    # Reasoning is collapsed; a tool call is a chip whose result shows on expand.
    await shown_run(page).get_by_role("tab", name="Live").click()
    reasoning = column(page, "optimist").locator("details.reasoning")
    assert await reasoning.get_attribute("open") is None
    chip = column(page, "optimist").locator(".chip")
    await expect(chip.locator(".chip-name")).to_have_text("search_notes")
    await expect(chip.locator(".chip-result")).not_to_be_visible()
    await chip.locator("summary").click()
    await expect(chip.locator(".chip-result")).to_contain_text('"top": "<b>not bold</b>"')

    await shown_run(page).get_by_role("tab", name="Compare").click()
    await page.screenshot(path=str(ARTIFACTS / "panel-comparison.png"))


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
async def test_eight_agents_wrap_on_wide_and_narrow_screens(
    page: Page, server: Server, width: int, height: int
) -> None:
    await page.set_viewport_size({"width": width, "height": height})
    eight = ("alpha", "beta", "gamma", "optimist", "skeptic", "historian", "steady-1", "steady-2")
    await open_panel(page, server.url)
    await pick(page, *eight)
    await send(page, "Everyone at once")
    await wait_finished(page)
    await shown_run(page).get_by_role("tab", name="Live").click()

    boxes = [await column(page, a).bounding_box() for a in eight]
    assert all(box is not None for box in boxes)
    lefts = {round(box["x"]) for box in boxes if box is not None}
    rows = {round(box["y"]) for box in boxes if box is not None}
    assert len(rows) > 1, "eight columns should wrap onto several rows"
    if width < 600:
        assert len(lefts) == 1, "a narrow screen shows one column per row"
    else:
        assert len(lefts) >= 3
    for box in boxes:
        assert box is not None
        assert box["x"] + box["width"] <= width + 1
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the page scrolls sideways"
    for agent_id in eight:
        assert await raw_text(page, agent_id) == EXPECTED[agent_id]


async def test_keyboard_only_send_and_stop(page: Page, server: Server) -> None:
    await open_panel(page, server.url)
    # Tab to the "slow" checkbox, tick it with Space, then to the prompt.
    box = page.locator('#agents input[data-agent-id="slow"]')
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await box.evaluate("el => el === document.activeElement"):
            break
    await page.keyboard.press("Space")
    await expect(box).to_be_checked()
    await page.locator("#prompt").focus()
    await page.keyboard.type("Go slowly")
    await page.keyboard.press("Enter")
    await wait_for_text(page, "slow", 10)
    await page.keyboard.press("Escape")
    await wait_status(page, "slow", "cancelled")
