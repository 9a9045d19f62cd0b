"""Issue 12, findings 1 and 7 in real Chromium.

- A page of another origin (a second server on another loopback port) tries every way a
  browser lets a page reach the API without asking: a WebSocket, a "simple" POST with no
  Content-Type (no CORS preflight), a text/plain POST, a JSON POST. Nothing may start.
- The panel page on a server with an API key works, and never puts the key in a URL: its
  event streams use stream tokens.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, Request, expect
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests._servers import serve_app

from ._agents import PLAIN
from ._panel import WAIT_MS, open_panel, pick, send, wait_finished, wait_status
from .conftest import ARTIFACTS, Server, start_server, stop_server

pytestmark = pytest.mark.browser

KEY = "browser-test-key-0123"

# The attacker's page: every attempt reports what it got; __done once all have settled.
_ATTACK = """<!doctype html><meta charset="utf-8"><title>another site</title>
<script>
const target = new URL(location.hash.slice(1));
const start = JSON.stringify({agents: [{agent_id: "alpha"}], message: "stolen"});
window.__results = {};
const attempts = [];

attempts.push(new Promise((resolve) => {
  const ws = new WebSocket(`ws://${target.host}/v1/ws`);
  ws.onopen = () => { window.__results.ws = "open"; ws.send(JSON.stringify({type: "start", ...JSON.parse(start)})); };
  ws.onmessage = (e) => { window.__results.ws_message = e.data; ws.close(); };
  ws.onclose = (e) => { window.__results.ws_close = e.code; resolve(); };
}));

async function post(name, init) {
  try {
    const r = await fetch(`${target.origin}/v1/fanouts`, {method: "POST", ...init});
    window.__results[name] = r.type === "opaque" ? "opaque" : r.status;
  } catch (err) {
    window.__results[name] = "error: " + err.message;
  }
}
attempts.push(post("no_content_type", {mode: "no-cors", body: new Blob([start])}));
attempts.push(post("text_plain", {mode: "no-cors", body: start}));
attempts.push(post("json", {headers: {"Content-Type": "application/json"}, body: start}));
Promise.all(attempts).then(() => { window.__done = true; });
</script>
"""


async def _attack_page(request: StarletteRequest) -> HTMLResponse:
    return HTMLResponse(_ATTACK)


@pytest.fixture
async def other_origin() -> AsyncIterator[str]:
    """A second server on another loopback port: a site of another origin."""
    app = Starlette(routes=[Route("/", _attack_page)])
    async with serve_app(app) as url:
        yield url


def _fanout_ids(server: Server) -> set[str]:
    listing = httpx.get(server.url + "/v1/fanouts?limit=1000", timeout=10).json()
    return {f["fanout_id"] for f in listing["fanouts"]}


async def test_a_page_of_another_origin_starts_nothing(
    page: Page, server: Server, other_origin: str
) -> None:
    before = _fanout_ids(server)
    assert server.url.split(":")[-1] != other_origin.split(":")[-1]
    await page.goto(f"{other_origin}/#{server.url}")
    await page.wait_for_function("window.__done === true", timeout=WAIT_MS)
    results: dict[str, Any] = await page.evaluate("window.__results")
    print("\ncross-origin attempts:", results)
    assert "ws" not in results, results  # the handshake was refused
    assert "ws_message" not in results, results
    assert _fanout_ids(server) == before, "a page of another origin started a fan-out"


@pytest.fixture
def keyed_server(configs_dir: Path) -> Iterator[Server]:
    """``orchestrator serve`` with an API key, over the browser tests' scripted agents."""
    argv = [
        str(Path(sys.executable).parent / "orchestrator"),
        "serve",
        "--scripted",
        "tests.browser._agents:create_directory",
        "--api-key",
        KEY,
    ]
    running = start_server(argv, cwd=configs_dir, log=ARTIFACTS / "keyed-server.log")
    yield running
    stop_server(running)


async def test_the_panel_with_a_key_never_puts_the_key_in_a_url(
    page: Page, keyed_server: Server
) -> None:
    urls: list[str] = []

    def record(request: Request) -> None:
        urls.append(request.url)

    page.on("request", record)
    await open_panel(page, keyed_server.url)
    await expect(page.locator("#key-form")).to_be_visible()
    await page.locator("#api-key").fill(KEY)
    await page.locator("#api-key").press("Enter")
    await expect(page.locator('#agents input[data-agent-id="alpha"]')).to_be_visible(
        timeout=WAIT_MS
    )
    await pick(page, "alpha", "beta")
    await send(page, "Why is the sky blue?")
    for agent_id in ("alpha", "beta"):
        await wait_status(page, agent_id, "done")
    await wait_finished(page)
    streams = [u for u in urls if "/events" in u]
    assert streams, urls
    assert all("access_token=" in u for u in streams), streams
    assert not [u for u in urls if KEY in u], "the key appeared in a URL"
    text = await page.locator(
        ".run:not([hidden]) .column[data-agent-id='alpha'] .raw"
    ).text_content()
    assert text == PLAIN["alpha"]
    log = (ARTIFACTS / "keyed-server.log").read_text()
    assert KEY not in log
