"""The panel page with sessions, in real Chromium: ``orchestrator serve`` over the Letta
protocol simulator, whose ``history`` directive answers with the user turns the
conversation holds, so a thread that leaks or forgets fails these tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from orchestrator.testing._modelserver import expected_history_answer
from orchestrator.testing._simulator import SimAgent, Simulator
from tests.testing._sim_fixtures import SimServer, run_simulator

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
from .conftest import ARTIFACTS, Server, start_server, stop_server

pytestmark = [pytest.mark.browser]

ORCHESTRATOR = [str(Path(sys.executable).parent / "orchestrator")]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with run_simulator(Simulator(3)) as server:
        yield server


@pytest.fixture(scope="module")
def session_server(sim: SimServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``orchestrator serve`` over the simulator, its sessions in a temporary SQLite file."""
    cwd = tmp_path_factory.mktemp("sessions")
    running = start_server(
        [
            *ORCHESTRATOR,
            "serve",
            "--letta-base-url",
            sim.base_url,
            "--database-url",
            f"sqlite:///{cwd / 'state.db'}",
        ],
        cwd=cwd,
        log=ARTIFACTS / "server-sessions.log",
    )
    yield running
    stop_server(running)


def _agents(sim: SimServer) -> list[SimAgent]:
    return list(sim.sim.agents.values())


async def _live(page: Page) -> None:
    await wait_finished(page)
    await shown_run(page).get_by_role("tab", name="Live").click()


async def test_follow_ups_threads_restore_fork_and_new_session(
    page: Page, sim: SimServer, session_server: Server
) -> None:
    a, b = _agents(sim)[:2]
    await open_panel(page, session_server.url)
    await expect(page.locator("#session-box")).to_be_visible()
    await pick(page, a.id, b.id)

    await send(page, "Hello [[history]]")
    await _live(page)
    assert await raw_text(page, a.id) == expected_history_answer(a.persona, 1, "scripted")
    assert await raw_text(page, b.id) == expected_history_answer(b.persona, 1, "scripted")
    session_id = await page.locator("#session-info").get_attribute("data-session-id")
    assert session_id

    # A follow-up goes to the same conversations, and each column shows its thread.
    await send(page, "Again [[history]]")
    await _live(page)
    assert await raw_text(page, a.id) == expected_history_answer(a.persona, 2, "scripted")
    thread = column(page, a.id).locator(".thread .turn")
    await expect(thread).to_have_count(1)
    await expect(thread.locator(".turn-prompt")).to_have_text("Hello [[history]]")
    await expect(thread.locator(".turn-answer")).to_have_text(
        expected_history_answer(a.persona, 1, "scripted")
    )

    # Reopening the page restores the session from localStorage, with its thread.
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
    restored = page.locator(".thread-view")
    await expect(restored).to_have_attribute("data-session-id", session_id, timeout=WAIT_MS)
    await expect(restored.locator(f'.column[data-agent-id="{b.id}"] .turn')).to_have_count(2)
    await send(page, "Third [[history]]")
    await _live(page)
    assert await raw_text(page, b.id) == expected_history_answer(b.persona, 3, "scripted")
    assert await page.locator("#session-info").get_attribute("data-session-id") == session_id

    # Fork: a new session that starts with the parent's turns.
    await page.locator("#fork-session").click()
    await expect(page.locator("#session-info")).to_contain_text(f"forked from {session_id}")
    forked = await page.locator("#session-info").get_attribute("data-session-id")
    assert forked
    assert forked != session_id
    await send(page, "In the fork [[history]]")
    await _live(page)
    assert await raw_text(page, a.id) == expected_history_answer(a.persona, 4, "scripted")

    # New session: fresh conversations.
    await page.locator("#new-session").click()
    await send(page, "From scratch [[history]]")
    await _live(page)
    assert await raw_text(page, a.id) == expected_history_answer(a.persona, 1, "scripted")
    fresh = await page.locator("#session-info").get_attribute("data-session-id")
    assert fresh not in (session_id, forked)


async def test_same_agent_twice_with_two_models_and_stop_per_column_and_all(
    page: Page, sim: SimServer, session_server: Server
) -> None:
    a = _agents(sim)[0]
    await open_panel(page, session_server.url)
    await page.locator("#new-session").click()
    await pick(page, a.id)
    await page.locator(f'#agents .add-column[data-agent-id="{a.id}"]').click()
    await page.locator("#extra-columns input").fill("openai-proxy/m2")

    await send(page, "Which model? [[history]]")
    await _live(page)
    one, two = f"{a.id}.1", f"{a.id}.2"
    assert await raw_text(page, one) == expected_history_answer(a.persona, 1, "scripted")
    assert await raw_text(page, two) == expected_history_answer(a.persona, 1, "m2")
    await expect(column(page, two).locator(".label")).to_have_text(f"{a.name} (openai-proxy/m2)")

    # Stop one column: the other goes on; then Stop all.
    await send(page, "Go on [[words=400 tps=40]]")
    await wait_for_text(page, two, 10)
    await column(page, two).locator(".stop").click()
    await wait_status(page, two, "cancelled")
    await wait_for_text(page, one, 10)
    await page.locator("#stop-all").click()
    await wait_status(page, one, "cancelled")
    await wait_finished(page)
