"""Issue 12, finding 10 (part): HEAD on static files, offline API docs, and the OpenAPI
document's security scheme."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from api import ApiSettings

from .conftest import Api, open_api


class _Links(HTMLParser):
    """Every URL an HTML page loads or links: ``src`` and ``href`` attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [
            value for name, value in attrs if name in ("src", "href", "spec-url") and value
        ]


def _urls(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    # Swagger UI's inline start-up script names the OpenAPI document too.
    return parser.urls + re.findall(r"url: '([^']+)'", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_api_docs_load_only_local_files(api: Api, page: str) -> None:
    response = await api.client.get(page)
    assert response.status_code == 200
    urls = _urls(response.text)
    assert urls, "the page loads nothing?"
    for url in urls:
        assert url.startswith("/"), f"{page} loads {url}"
        assert not url.startswith("//"), f"{page} loads {url}"
        asset = await api.client.get(url)
        assert asset.status_code == 200, url
    assert "cdn" not in response.text.lower()
    assert "fonts.googleapis" not in response.text


async def test_the_docs_and_their_files_need_no_key() -> None:
    async with open_api(ApiSettings(api_key="k")) as api:
        html = (await api.client.get("/docs")).text
        for url in _urls(html):
            assert (await api.client.get(url)).status_code == 200, url


@pytest.mark.parametrize("path", ["/", "/static/panel.css", "/static/js/app.js"])
async def test_head_on_the_page_and_its_files_gives_the_headers(api: Api, path: str) -> None:
    got = await api.client.get(path)
    head = await api.client.head(path)
    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-type", "content-length", "content-security-policy"):
        assert head.headers[name] == got.headers[name], name


async def test_openapi_declares_the_bearer_scheme_on_protected_operations(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerAuth"]["description"],
    }
    assert schemes["streamToken"]["in"] == "query"
    assert schemes["streamToken"]["name"] == "access_token"
    public = {"/healthz"}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            security = operation.get("security")
            if path in public:
                assert not security, (method, path)
                continue
            assert security, (method, path)
            assert {"bearerAuth": []} in security, (method, path)
            streaming = method == "get" and path.endswith(("/events", "/ui-message-stream"))
            assert ({"streamToken": []} in security) is streaming, (method, path)
