"""Fixtures for the browser tests: a real uvicorn server and real headless Chromium.

The server is a uvicorn subprocess serving ``tests.browser._server`` (the real API over
scripted agents); the browser is Debian's Chromium driven by Playwright
(``scripts/install-chromium.sh`` installs it; Playwright's own download does not work here).
Every test leaves a screenshot in ``tests/artifacts/`` (git-ignored), also when it fails.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Dialog, Error, Page, async_playwright

from tests._chromium import CHROMIUM, CHROMIUM_ARGS
from tests._servers import SpawnedServer, spawn_server

# The Letta stack's fixture, and its hook that brings a cold stack up once after collection
# (outside any per-test timeout), also when only tests/browser is collected.
from tests.letta.conftest import letta_stack as letta_stack
from tests.letta.conftest import pytest_collection_finish as pytest_collection_finish

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"

# Records what the page must never do: open a dialog, or trip the Content-Security-Policy.
# Added before any page script runs (init scripts are not subject to the page's CSP).
_WATCH_SCRIPT = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


class Server(SpawnedServer):
    """The scripted API server of the browser tests."""

    async def post(self, path: str) -> httpx.Response:
        """A POST to the server (for the test-only switches)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            return await client.post(path)


def start_server(
    argv: list[str], *, cwd: Path, log: Path, env: dict[str, str] | None = None
) -> Server:
    """Run ``argv`` (a uvicorn server) on a bound socket; wait until ``/healthz`` answers."""
    spawned = spawn_server([*argv, "--log-level", "warning"], cwd=cwd, env=env, log=log)
    return Server(spawned.url, spawned.process, spawned.log)


def stop_server(server: SpawnedServer) -> None:
    """Stop the uvicorn subprocess (and wait for it)."""
    server.stop()


@pytest.fixture(scope="session")
def configs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working directory of the scripted server; its ``configs/`` holds one preset."""
    cwd = tmp_path_factory.mktemp("server")
    configs = cwd / "configs"
    configs.mkdir()
    (configs / "trio.yaml").write_text(
        "title: Three scripted agents\n"
        "description: Alpha, beta and gamma answer together.\n"
        "agents:\n"
        "  - {id: alpha, label: Alpha}\n"
        "  - {id: beta, label: Beta}\n"
        "  - {id: gamma, label: Gamma}\n"
        "options: {timeout_s: 60, cancel_timeout_s: 2}\n"
        'prompts: ["Why is the sky blue?"]\n'
    )
    (configs / "views.yaml").write_text(
        "title: Three views\n"
        "agents:\n"
        "  - {id: optimist, label: Optimist}\n"
        "  - {id: skeptic, label: Skeptic}\n"
        "  - {id: historian, label: Historian}\n"
    )
    (configs / "not-a-panel.yaml").write_text("runs: []\n")
    return cwd


@pytest.fixture(scope="session")
def server(configs_dir: Path) -> Iterator[Server]:
    """The scripted API server (real uvicorn), shared by the tests of the session."""
    argv = [sys.executable, "-m", "uvicorn", "--factory", "tests.browser._server:create_app"]
    running = start_server(argv, cwd=configs_dir, log=ARTIFACTS / "server.log")
    yield running
    stop_server(running)


@dataclass
class Watch:
    """What a page did that a test may forbid: dialogs and console errors."""

    dialogs: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    async def on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def on_page_error(self, error: Error) -> None:
        self.page_errors.append(str(error))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium (Debian's), closed after the test."""
    if not await anyio.Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-chromium.sh (make test does)")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def watch() -> Watch:
    """Dialogs and console errors of the test's page."""
    return Watch()


@pytest.fixture
async def page(
    browser: Browser, watch: Watch, request: pytest.FixtureRequest
) -> AsyncIterator[Page]:
    """A fresh page (1280 x 860) that records dialogs; screenshot saved after the test."""
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    tab = await context.new_page()
    await tab.add_init_script(_WATCH_SCRIPT)
    tab.on("dialog", watch.on_dialog)
    tab.on("console", watch.on_console)
    tab.on("pageerror", watch.on_page_error)
    try:
        yield tab
        # An uncaught exception in the page fails any test, whatever it checked.
        assert watch.page_errors == []
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        await context.close()


async def csp_violations(page: Page) -> list[Any]:
    """The Content-Security-Policy violations the page reported so far."""
    found: list[Any] = await page.evaluate("window.__cspViolations")
    return found
