"""Short-lived signed stream tokens, so the API key never has to appear in a URL.

A browser cannot set headers on ``EventSource`` or ``WebSocket``. Rather than putting the
key in the query string (where access logs, proxies and the browser's history keep it), a
client that holds the key asks ``POST /v1/stream-tokens`` for a token and sends that as
``?access_token=`` to an events endpoint or the WebSocket.

A token is ``<payload>.<signature>``, both base64url: the payload is a small JSON object
with the scope (``stream``: every events endpoint and the WebSocket; ``fanout:<id>``: that
fan-out's events only) and the expiry (Unix seconds); the signature is HMAC-SHA256 of the
payload under the server's secret. The secret is random per process unless
``--token-secret`` gives one (replicas behind one load balancer must share it). A token is
checked when a stream is opened; a stream that outlives its token goes on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field

from ._errors import error_responses
from ._models import Name

__all__ = ["STREAM_SCOPE", "StreamTokens", "fanout_scope", "router"]

#: The scope of a token good for every streaming endpoint.
STREAM_SCOPE = "stream"

_FANOUT_PREFIX = "fanout:"


def fanout_scope(fanout_id: str) -> str:
    """The scope of a token good for one fan-out's events only."""
    return _FANOUT_PREFIX + fanout_id


class StreamTokens:
    """Issues and checks stream tokens under one secret.

    ``secret`` of ``None`` draws a random one (tokens then die with the process);
    ``ttl_s`` is how long a token may be used to open a stream.
    """

    def __init__(
        self,
        secret: bytes | None = None,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self.ttl_s = ttl_s
        self._clock = clock

    def issue(self, scope: str) -> str:
        """A token for ``scope`` that expires ``ttl_s`` from now."""
        payload = json.dumps(
            {"s": scope, "e": int(self._clock() + self.ttl_s), "n": secrets.token_hex(4)},
            separators=(",", ":"),
        ).encode()
        return f"{_encode(payload)}.{_encode(self._sign(payload))}"

    def scope_of(self, token: str) -> str | None:
        """The scope of ``token`` if it is genuine and not expired, else ``None``."""
        head, dot, tail = token.partition(".")
        if not dot:
            return None
        try:
            payload, signature = _decode(head), _decode(tail)
        except ValueError:
            return None
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            claims = json.loads(payload)
            scope, expires = claims["s"], claims["e"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(scope, str) or not isinstance(expires, int):
            return None
        return scope if self._clock() < expires else None

    def allows(self, token: str, path: str) -> bool:
        """True when ``token`` is valid and its scope covers the streaming ``path``."""
        scope = self.scope_of(token)
        if scope is None:
            return False
        if scope == STREAM_SCOPE:
            return True
        if scope.startswith(_FANOUT_PREFIX):
            base = f"/v1/fanouts/{scope[len(_FANOUT_PREFIX) :]}/"
            if path == base + "events":
                return True
            # One agent's AI SDK stream of that fan-out: .../agents/{agent_id}/ui-message-stream
            agent, _, rest = path.removeprefix(base).removeprefix("agents/").partition("/")
            return path.startswith(base + "agents/") and bool(agent) and rest == "ui-message-stream"
        return False

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(str(exc)) from None


class StreamTokenRequest(BaseModel):
    """What a stream token is for: one fan-out's events, or (no ``fanout_id``) any stream."""

    model_config = ConfigDict(extra="forbid")

    fanout_id: Name | None = Field(
        default=None, min_length=1, description="Limit the token to this fan-out's events."
    )


class StreamTokenIssued(BaseModel):
    """A stream token: send it as ``?access_token=`` to an events endpoint or the WebSocket."""

    token: str
    scope: str = Field(description="`stream` (every stream) or `fanout:<id>`.")
    expires_in_s: float = Field(description="Seconds the token may be used to open a stream.")


router = APIRouter(tags=["server"], responses=error_responses(401))


@router.post("/v1/stream-tokens", response_model=StreamTokenIssued, status_code=201)
async def create_stream_token(
    request: Request, body: Annotated[StreamTokenRequest | None, Body()] = None
) -> StreamTokenIssued:
    """A short-lived token for `EventSource` and `WebSocket`, so the key stays out of URLs.

    Browsers cannot send `Authorization` on those two; send the token as `?access_token=`.
    It is checked when the stream opens (an open stream outlives it); get a new one to
    reconnect after it expired.
    """
    tokens: StreamTokens = request.app.state.stream_tokens
    fanout_id = body.fanout_id if body is not None else None
    scope = fanout_scope(fanout_id) if fanout_id else STREAM_SCOPE
    return StreamTokenIssued(token=tokens.issue(scope), scope=scope, expires_in_s=tokens.ttl_s)
