"""What a user does on the panel page, as steps for the browser tests."""

from __future__ import annotations

from playwright.async_api import Locator, Page, expect

#: Long enough for a slow CI machine; every wait is on a real condition in the page.
WAIT_MS = 30_000


async def open_panel(page: Page, url: str) -> None:
    """Load the page and wait until it has listed agents and presets."""
    await page.goto(url + "/")
    await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)


async def pick(page: Page, *agent_ids: str) -> None:
    """Tick the agents' checkboxes in the picker."""
    for agent_id in agent_ids:
        await page.locator(f'#agents input[data-agent-id="{agent_id}"]').check()


async def send(page: Page, prompt: str) -> None:
    """Type the prompt and press Enter; wait until the new fan-out shows."""
    before = await page.locator(".run").count()
    await page.locator("#prompt").fill(prompt)
    await page.locator("#prompt").press("Enter")
    await expect(page.locator(".run")).to_have_count(before + 1, timeout=WAIT_MS)


def shown_run(page: Page) -> Locator:
    """The fan-out on screen."""
    return page.locator(".run:not([hidden])")


def column(page: Page, agent_id: str) -> Locator:
    """The live column of an agent in the fan-out on screen."""
    return shown_run(page).locator(f'.column[data-agent-id="{agent_id}"]')


async def wait_status(page: Page, agent_id: str, status: str) -> None:
    """Wait until the agent's column shows ``status``."""
    await expect(column(page, agent_id)).to_have_attribute("data-status", status, timeout=WAIT_MS)


async def raw_text(page: Page, agent_id: str) -> str:
    """The answer as the page holds it (the Markdown source of the column)."""
    return await column(page, agent_id).locator(".raw").text_content() or ""


async def wait_for_text(page: Page, agent_id: str, min_chars: int = 1) -> None:
    """Wait until the agent's column shows at least ``min_chars`` of answer."""
    await page.wait_for_function(
        """([id, n]) => {
            const el = document.querySelector(
                `.run:not([hidden]) .column[data-agent-id="${id}"] .raw`);
            return el !== null && el.textContent.length >= n;
        }""",
        arg=[agent_id, min_chars],
        timeout=WAIT_MS,
    )


async def wait_finished(page: Page) -> None:
    """Wait until the fan-out on screen has ended (its comparison view is built)."""
    await expect(shown_run(page)).to_have_attribute("data-finished", "true", timeout=WAIT_MS)
