"""The HTTP API (FastAPI): SSE, WebSocket, REST control and the panel page.

Build it with :func:`create_app`; serve it with ``orchestrator serve``. See ``docs/api.md``.
"""

from __future__ import annotations

from ._app import create_app as create_app
from ._settings import ApiSettings as ApiSettings
from ._settings import check_bind as check_bind
from ._settings import is_loopback as is_loopback

__all__ = ["ApiSettings", "check_bind", "create_app", "is_loopback"]
