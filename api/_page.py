"""The panel web page: ``/`` and its static files, plus ``GET /v1/presets``.

The page is plain HTML, CSS and JavaScript modules served from ``api/static`` (no Node.js,
no build step, nothing to install in the browser). It talks to the rest of the API like any
client: ``GET /v1/agents``, ``POST /v1/fanouts``, ``GET /v1/fanouts/{id}/events`` (SSE) and
``POST /v1/fanouts/{id}/cancel``.

Agent output is untrusted. The page renders it with a vendored Markdown parser and
sanitizer, and every response of this router carries a strict Content-Security-Policy (no
inline script, no foreign origins), so that even a sanitizer bug cannot run script.

Include it in an app with ``app.include_router(page_router)``, or build one over another
configs folder with :func:`create_page_router`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from ._auth import bearer_scheme, require_key
from ._errors import error_responses
from ._models import PresetList
from ._presets import PresetCache

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_DIR", "create_page_router", "page_router"]

#: Where the page's files live.
STATIC_DIR = Path(__file__).parent / "static"

#: Sent with the page and its files. ``'self'`` only: scripts are separate files (never
#: inline), connections go back to this server, images are local or data URLs (an agent's
#: Markdown cannot make the browser call a foreign server), nothing may frame the page.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ]
)

_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def create_page_router(configs_dir: str | Path = "configs") -> APIRouter:
    """A router serving the panel page at ``/``, its files under ``/static/`` and presets.

    ``configs_dir`` is the folder whose panel YAML files (see
    :class:`~orchestrator.PanelConfig`) are offered as presets by ``GET /v1/presets``; a
    relative path is resolved against the working directory at each request, so presets
    added while the server runs show up. Files are parsed in a worker thread, once per
    change (see :class:`~api._presets.PresetCache`).
    """
    router = APIRouter()
    static = StaticFiles(directory=STATIC_DIR)
    presets = PresetCache(configs_dir)

    # HEAD too: link checkers, caches and curl -I ask for headers only.
    @router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> Response:
        # no-cache: a restarted server with a newer page must not meet a stale copy.
        headers = {**_SECURITY_HEADERS, "Cache-Control": "no-cache"}
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=headers)

    @router.api_route("/static/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def static_file(path: str, request: Request) -> Response:
        # StaticFiles does the safe lookup (no escaping the folder) and the conditional
        # requests; mounting it would not survive include_router, so it is called here.
        response = await static.get_response(path, request.scope)
        response.headers.update(_SECURITY_HEADERS)
        response.headers["Cache-Control"] = "no-cache"
        return response

    # exclude_unset: a preset agent has agent_id or name, not the other one as null.
    @router.get(
        "/v1/presets",
        tags=["panel"],
        dependencies=[Depends(bearer_scheme)],
        response_model=PresetList,
        response_model_exclude_unset=True,
        responses=error_responses(401),
    )
    async def list_presets(request: Request) -> PresetList:
        """Panel presets: every panel YAML file in the configs folder, with its agents."""
        # The page and its files are public (a browser cannot send a key to load them);
        # presets name agents, so they are guarded like /v1/agents when the app has a key.
        api = getattr(request.app.state, "api", None)
        if api is not None:
            require_key(api.settings.api_key, request)
        return await presets.aread()

    return router


#: The router for ``app.include_router(page_router)``, reading presets from ``./configs``.
page_router = create_page_router()
