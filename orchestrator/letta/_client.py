"""The Letta client a fan-out shares, and the retry rules of its requests.

:func:`create_letta_client` builds one ``AsyncLetta`` (one connection pool) for every source
of a fan-out, with the SDK's own retries off: :class:`~orchestrator.LettaSource` retries only
what is safe to repeat (:func:`connect_retrying`).
"""

from __future__ import annotations

import os
import weakref

import anyio
import httpx
import letta_client
from letta_client import AsyncLetta, DefaultAsyncHttpxClient
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ..config._config import LettaConnection

__all__ = ["LOCAL_LETTA_PORT", "connect_retrying", "create_letta_client", "default_base_url"]


#: Where the local stack (``orchestrator stack up``) serves Letta unless told otherwise. The
#: stack reads the same variable; the library never imports the stack to learn it.
LOCAL_LETTA_PORT = 8283


def default_base_url() -> str:
    """``$LETTA_BASE_URL``, else the URL of the project's local stack on this machine."""
    env = os.environ.get("LETTA_BASE_URL")
    if env:
        return env
    port = os.environ.get("LETTA_FANOUT_LETTA_PORT") or LOCAL_LETTA_PORT
    return f"http://127.0.0.1:{port}"


def create_letta_client(connection: LettaConnection | None = None) -> AsyncLetta:
    """One ``AsyncLetta`` for a whole fan-out (its connection pool serves every agent).

    The pool holds ``connection.max_connections`` connections (one per concurrent stream).
    The SDK's own retries are off: :class:`LettaSource` retries only what is safe to retry.
    Close it with ``await client.close()``.
    """
    connection = connection or LettaConnection()
    timeout = httpx.Timeout(connection.timeout_s, connect=connection.connect_timeout_s)
    # Every stream holds a connection for its whole answer, so keep-alive follows the limit.
    limits = httpx.Limits(
        max_connections=connection.max_connections,
        max_keepalive_connections=connection.max_connections,
    )
    return AsyncLetta(
        base_url=connection.base_url or default_base_url(),
        api_key=connection.token(),
        timeout=timeout,
        max_retries=0,
        http_client=DefaultAsyncHttpxClient(limits=limits, timeout=timeout),
    )


# One retry-less copy per caller's client, shared by all its sources: a fresh copy per
# source would re-run the SDK's platform detection (a worker-thread hop) on its first
# request, which was most of the client's CPU when 1000 sources started at once.
_RETRYLESS: weakref.WeakKeyDictionary[AsyncLetta, AsyncLetta] = weakref.WeakKeyDictionary()


def _without_retries(client: AsyncLetta) -> AsyncLetta:
    # The SDK would retry on its own (also 409/429/5xx after the run started): ours only.
    if client.max_retries == 0:
        return client
    copy = _RETRYLESS.get(client)
    if copy is None:
        copy = _RETRYLESS[client] = client.with_options(max_retries=0)
    return copy


def _is_connect_failure(exc: BaseException) -> bool:
    # Safe to retry only when the request cannot have reached the server: the connection
    # itself failed. A read timeout may mean the server is already running the agent.
    if isinstance(exc, letta_client.APITimeoutError):
        return isinstance(exc.__cause__, httpx.ConnectTimeout)
    return isinstance(exc, letta_client.APIConnectionError)


def _is_transient(exc: BaseException) -> bool:
    # Safe to repeat when the request names the run by id or carries the message's otid:
    # whatever reached the server, asking again starts nothing new.
    if isinstance(exc, letta_client.APIStatusError):
        return exc.status_code in (502, 504)  # a proxy in front of a restarting server
    return isinstance(exc, letta_client.APIConnectionError | httpx.TransportError)


def connect_retrying(retries: int, initial_s: float, max_s: float) -> AsyncRetrying:
    """Tenacity's loop for requests that are safe to repeat after a connection failure.

    ``retries`` more attempts after the first, waits doubling from ``initial_s`` up to
    ``max_s`` with jitter (so agents that failed together do not retry in lockstep).
    """
    return AsyncRetrying(
        stop=stop_after_attempt(retries + 1),
        wait=wait_exponential_jitter(multiplier=initial_s, max=max_s, jitter=initial_s),
        retry=retry_if_exception(_is_connect_failure),
        sleep=anyio.sleep,
        reraise=True,
    )
