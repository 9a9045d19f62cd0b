"""The optional API key, as the endpoints see it.

The key is checked once, before the body is read, by :class:`~api._guard.Guard`:
``Authorization: Bearer <key>`` on every protected endpoint; on the streaming endpoints
(``GET .../events``, the WebSocket), where browsers cannot set headers, also
``?access_token=`` with a short-lived stream token (``POST /v1/stream-tokens``) or the key.
The functions here read the guard's verdict, so an endpoint cannot be reached by a form
of the key the guard refused.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from ._errors import ApiError
from ._guard import AUTHORIZED

#: Documents the key in the OpenAPI document (Swagger UI's "Authorize"); the guard checks it.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    description="The server's API key (`--api-key`), when it has one.",
)


def key_matches(expected: str | None, conn: HTTPConnection) -> bool:
    """True when no key is configured or the guard accepted the connection's credentials."""
    return expected is None or bool(conn.scope.get(AUTHORIZED))


def require_key(expected: str | None, conn: HTTPConnection) -> None:
    """Raise a ``401`` :class:`ApiError` unless the connection may proceed."""
    if not key_matches(expected, conn):
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def authorized(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> None:
    """The dependency of protected endpoints: ``401`` unless the guard let the request in."""
    require_key(request.app.state.api.settings.api_key, request)
