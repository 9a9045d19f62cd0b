"""The panel page's routes over HTTP (no browser): headers, static files, presets."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api import ApiSettings, create_app
from api._page import CONTENT_SECURITY_POLICY, STATIC_DIR, create_page_router

from ._agents import create_directory


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ApiSettings(), create_directory())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        yield http


async def test_page_is_served_with_a_strict_content_security_policy(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert csp == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "default-src 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    # No inline script or style anywhere in the page: the policy would block it.
    html = response.text
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
    assert re.search(r"<style|\sstyle=|\son[a-z]+=", html) is None


@pytest.mark.parametrize(
    "path",
    ["js/app.js", "js/stream.js", "panel.css", "vendor/marked.umd.js", "vendor/purify.min.js"],
)
async def test_static_files_are_served(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(f"/static/{path}")
    assert response.status_code == 200
    assert response.content == (STATIC_DIR / path).read_bytes()
    assert "content-security-policy" in response.headers


@pytest.mark.parametrize("path", ["../_page.py", "..%2F_page.py", "nope.js"])
async def test_nothing_outside_the_static_folder_is_served(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(f"/static/{path}")
    assert response.status_code == 404


async def test_presets_list_panel_configs_only(tmp_path: Path) -> None:
    (tmp_path / "b-panel.yaml").write_text(
        "title: Pair\nagents:\n  - {id: alpha, label: A}\n  - {name: beta}\n"
        "options: {policy: first, cancel_timeout_s: 1}\nprompts: [hello]\n"
    )
    (tmp_path / "a-batch.yaml").write_text("prompts_file: x.jsonl\nruns: 3\n")
    (tmp_path / "broken.yaml").write_text("agents: [\n")
    app = FastAPI()
    app.include_router(create_page_router(tmp_path))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        presets = (await http.get("/v1/presets")).json()["presets"]
    assert presets == [
        {
            "id": "b-panel",
            "file": "b-panel.yaml",
            "title": "Pair",
            "description": None,
            "agents": [{"label": "A", "agent_id": "alpha"}, {"label": "beta", "name": "beta"}],
            "prompts": ["hello"],
            # Only what a POST /v1/fanouts body accepts (not cancel_timeout_s).
            "options": {
                "buffer": 64,
                "overflow": "coalesce",
                "policy": "first",
                "idle_timeout_s": 60.0,
            },
        }
    ]


async def test_with_an_api_key_the_page_is_public_and_presets_are_not() -> None:
    app = create_app(ApiSettings(api_key="sesame"), create_directory())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/static/js/app.js")).status_code == 200
        assert (await http.get("/v1/presets")).status_code == 401
        keyed = await http.get("/v1/presets", headers={"Authorization": "Bearer sesame"})
        assert keyed.status_code == 200
