"""The optional API key: ``Authorization: Bearer <key>`` on every protected endpoint.

Browsers cannot set headers on ``EventSource`` or ``WebSocket``, so those two also accept
the key as the ``access_token`` query parameter.
"""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection

from ._errors import ApiError

_QUERY_KEY = "access_token"


def presented_key(conn: HTTPConnection) -> str | None:
    """The key a request or WebSocket presents, from the header or the query string."""
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return conn.query_params.get(_QUERY_KEY)


def key_matches(expected: str | None, conn: HTTPConnection) -> bool:
    """True when no key is configured or the connection presents the right one."""
    if expected is None:
        return True
    given = presented_key(conn)
    # Constant time, so the key cannot be guessed byte by byte from response timing.
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def require_key(expected: str | None, conn: HTTPConnection) -> None:
    """Raise a ``401`` :class:`ApiError` unless the connection may proceed."""
    if not key_matches(expected, conn):
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
