"""``LettaSource``: one Letta agent as a :class:`~orchestrator.Source`.

``letta_client.AsyncLetta`` sends the request (``agents.messages.with_streaming_response
.create(..., streaming=True, stream_tokens=True)``: the client's base URL, auth, headers,
timeouts, connection pool and error classes); the SSE body is read with httpx-sse and its JSON
mapped by :class:`LettaMapper`, because the SDK's own iterator builds and validates a pydantic
object per token, which was most of the client's CPU per event. Failures to connect
before anything was streamed are retried with jittered exponential backoff (tenacity);
nothing is retried once the server accepted the request, so an answer is never sent twice.

With ``conversation_id`` the message goes to that Letta conversation
(``conversations.messages``), otherwise to the agent's default conversation
(``agents.messages``); ``model`` is sent as ``override_model``.

``cancel()`` closes the HTTP stream and cancels the run on the server
(``agents.messages.cancel`` with the run id), shielded and with a short timeout: a Letta
server keeps running an agent after its streaming client goes away. It only ever cancels
its own run: while the run id is not known yet, it looks up the active runs of its own
conversation (never the agent's other runs) until the run appears, within the timeout.
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import httpx
import letta_client
import orjson
from letta_client import AsyncLetta, DefaultAsyncHttpxClient, omit
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from .._core._events import SourceEvent
from .._core._exceptions import ConfigError, SourceError
from ..config._config import LettaConnection
from ._mapping import LettaMapper
from ._sse import SSEFrames

__all__ = ["LettaSource", "connect_retrying", "create_letta_client", "default_base_url"]

logger = logging.getLogger("orchestrator.letta")


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


def _loads(data: bytes) -> Any:
    # orjson per token; what it refuses and Python's json reads (NaN, lone surrogates, huge
    # integers, bytes that are not UTF-8, decoded as httpx would) goes to json as before.
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data.decode("utf-8", "replace"))


def _is_connect_failure(exc: BaseException) -> bool:
    # Safe to retry only when the request cannot have reached the server: the connection
    # itself failed. A read timeout may mean the server is already running the agent.
    if isinstance(exc, letta_client.APITimeoutError):
        return isinstance(exc.__cause__, httpx.ConnectTimeout)
    return isinstance(exc, letta_client.APIConnectionError)


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


class LettaSource:
    """A Letta agent as a source: streams its answer, cancels its run on the server.

    ``client`` is shared by every source of a fan-out (one connection pool). Connection
    failures before the stream starts are retried up to ``connect_retries`` times with
    jittered exponential backoff (``retry_initial_s`` doubling up to ``retry_max_s``); after
    that the agent ends with ``agent_error`` ``unavailable`` (retryable). ``cancel()`` waits
    at most ``cancel_timeout_s`` for the server. Raises :class:`ConfigError` for bad options.

    ``conversation_id`` streams through that Letta conversation instead of the agent's
    default one; ``model`` (a model handle) overrides the agent's model for this source's
    requests. ``column_id`` is the id the events carry (``agent_id`` of the source); it
    defaults to the Letta agent id, and must differ when one agent is in a fan-out twice.
    ``conversation_key`` names the (agent, conversation) pair, so that a fan-out refuses to
    run two streams on one conversation at once.

    With ``fresh_conversation`` every :meth:`stream` creates a new conversation of the agent
    first (its id is in ``conversations`` and in the ``agent_start`` event), so the answer
    depends on nothing sent before; such a source claims no conversation key (nobody else
    can be using a conversation it has just created). Unless ``keep_conversation``, the
    conversation is deleted once its run is over.
    """

    def __init__(
        self,
        client: AsyncLetta,
        agent_id: str,
        *,
        conversation_id: str | None = None,
        model: str | None = None,
        column_id: str | None = None,
        label: str | None = None,
        fresh_conversation: bool = False,
        keep_conversation: bool = True,
        stream_tokens: bool = True,
        connect_retries: int = 3,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 2.0,
        cancel_timeout_s: float = 2.0,
    ) -> None:
        if not agent_id:
            raise ConfigError("LettaSource needs a non-empty agent_id")
        if connect_retries < 0 or retry_initial_s < 0 or retry_max_s < 0:
            raise ConfigError("LettaSource: retry settings must be >= 0")
        if cancel_timeout_s <= 0:
            raise ConfigError("LettaSource: cancel_timeout_s must be > 0")
        if conversation_id is not None and not conversation_id:
            raise ConfigError("LettaSource: conversation_id must be non-empty when given")
        if model is not None and not model:
            raise ConfigError("LettaSource: model must be non-empty when given")
        if fresh_conversation and conversation_id is not None:
            raise ConfigError("LettaSource: give conversation_id or fresh_conversation, not both")
        self._client = client
        self._requests = _without_retries(client)
        self._letta_agent_id = agent_id
        self._agent_id = column_id or agent_id
        self._label = label or self._agent_id
        self.conversation_id = conversation_id
        self.model = model
        self.fresh_conversation = fresh_conversation
        self.keep_conversation = keep_conversation
        self.conversations: list[str] = []
        self._discarded: set[str] = set()
        self.conversation_key: str | None = (
            None if fresh_conversation else f"{agent_id}/{conversation_id or 'default'}"
        )
        self.info: Mapping[str, Any] = {
            "letta_agent_id": agent_id,
            "conversation_id": conversation_id,
            "model": model,
        }
        self.stream_tokens = stream_tokens
        self.connect_retries = connect_retries
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.cancel_timeout_s = cancel_timeout_s
        self._response: httpx.Response | None = None
        self._mapper: LettaMapper | None = None
        self._requested = False
        self._run_pending = False
        self.attempts = 0
        self.run_ids: list[str] = []
        self.cancelled_runs: list[str] = []

    @property
    def agent_id(self) -> str:
        return self._agent_id

    @property
    def label(self) -> str:
        return self._label

    @property
    def letta_agent_id(self) -> str:
        """The Letta agent this source talks to (``agent_id`` is the column id)."""
        return self._letta_agent_id

    @property
    def run_id(self) -> str | None:
        """The run of the current (or last) stream, once the server announced it."""
        return self._mapper.run_id if self._mapper is not None else None

    async def stream(self, message: str) -> AsyncIterator[SourceEvent]:
        """Send ``message`` to the agent and stream its answer as source events."""
        mapper = self._mapper = LettaMapper()
        self._requested = False
        response: httpx.Response | None = None
        if self.fresh_conversation:
            try:
                created = await self._requests.conversations.create(agent_id=self._letta_agent_id)
            except Exception as exc:
                for sev in mapper.fail(exc, agent_id=self._letta_agent_id):
                    yield sev
                return
            self.conversation_id = created.id
            self.conversations.append(created.id)
        try:
            try:
                response = self._response = await self._open(message)
            except Exception as exc:
                # Refused or unreachable: no run exists that cancel() would have to stop.
                if isinstance(exc, letta_client.APIStatusError) or _is_connect_failure(exc):
                    self._requested = False
                for sev in mapper.fail(exc, agent_id=self._letta_agent_id):
                    yield sev
                return
            feed = mapper.feed
            frames = SSEFrames().feed
            done = False
            try:
                # The SDK would build a pydantic object per frame (about half the client's
                # CPU per token, see bench/README.md): parse the SSE frames ourselves, from
                # the body's bytes, and map the JSON, with the SDK's rules: ``[DONE]`` ends
                # the stream, ``event: error`` fails it, frames with any other event name
                # are skipped.
                async for chunk in response.aiter_bytes():
                    for event, data in frames(chunk):
                        if data.startswith(b"[DONE]"):
                            done = True
                            break
                        if event == b"message":
                            events = feed(_loads(data))
                            if self._run_pending and mapper.run_id is not None:
                                self._run_pending = False
                                self.run_ids.append(mapper.run_id)
                                if self.fresh_conversation:
                                    events = [self._with_conversation(sev) for sev in events]
                            for sev in events:
                                yield sev
                        elif event == b"error":
                            for sev in mapper.error_frame(data.decode("utf-8", "replace")):
                                yield sev
                            return
                    if done:
                        break
            except Exception as exc:
                for sev in mapper.fail(exc, agent_id=self._letta_agent_id):
                    yield sev
                return
            for sev in mapper.finish():
                yield sev
        finally:
            self._response = None
            if response is not None:
                with anyio.CancelScope(shield=True):
                    await response.aclose()
            if self.fresh_conversation and (mapper.ended or not self._requested):
                # The run is over (or never started): nothing runs in the conversation now.
                await self._discard()

    def _with_conversation(self, sev: SourceEvent) -> SourceEvent:
        if sev.type != "agent_start":
            return sev
        return SourceEvent("agent_start", {**sev.data, "conversation_id": self.conversation_id})

    async def _discard(self) -> None:
        conversation_id = self.conversation_id
        if self.keep_conversation or conversation_id is None:
            return
        if conversation_id in self._discarded:
            return
        self._discarded.add(conversation_id)
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.cancel_timeout_s):
            try:
                await self._requests.conversations.delete(
                    conversation_id, timeout=self.cancel_timeout_s
                )
            except (letta_client.LettaError, httpx.HTTPError) as exc:
                logger.warning("deleting conversation %s failed: %s", conversation_id, exc)

    async def _open(self, message: str) -> httpx.Response:
        retrying = connect_retrying(self.connect_retries, self.retry_initial_s, self.retry_max_s)
        async for attempt in retrying:
            with attempt:
                self.attempts += 1
                self._requested = True
                self._run_pending = True
                # The SDK builds and sends the request (base URL, auth, headers, timeouts, its
                # connection pool) and raises its usual errors for a refused request; the
                # body is left unread for us.
                request = self._request(message)
                # Entering the manager only sends the request; what its exit would do
                # (close the response) stream() and cancel() do on the response itself.
                api_response = await request.__aenter__()
                response: httpx.Response = api_response.http_response
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith("text/event-stream"):
                    await response.aclose()
                    raise SourceError(
                        f"the Letta server answered {content_type or 'no content type'}, "
                        "not an event stream",
                        code="protocol_error",
                        retryable=False,
                    )
                return response
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _request(self, message: str) -> Any:
        extra: dict[str, Any] = {} if self.model is None else {"override_model": self.model}
        messages: Any = [{"role": "user", "content": message}]
        if self.conversation_id is None:
            return self._requests.agents.messages.with_streaming_response.create(
                agent_id=self._letta_agent_id,
                messages=messages,
                streaming=True,
                stream_tokens=self.stream_tokens,
                **extra,
            )
        return self._requests.conversations.messages.with_streaming_response.create(
            self.conversation_id,
            messages=messages,
            streaming=True,
            stream_tokens=self.stream_tokens,
            **extra,
        )

    async def cancel(self) -> None:
        """Close the HTTP stream and cancel the run on the server (shielded, time-boxed).

        Does nothing when no request was sent or the server already ended the run. Only this
        source's own run is cancelled: by its id once the stream announced it; before that,
        the active runs of this source's conversation are looked up (the agent's runs in
        other conversations are left alone) until the run appears or ``cancel_timeout_s``
        passes.
        """
        with anyio.CancelScope(shield=True):
            response = self._response
            if response is not None:
                await response.aclose()
            mapper = self._mapper
            if not self._requested or mapper is None or mapper.ended:
                return
            self._requested = False
            run_id = mapper.run_id
            agent = self._letta_agent_id
            with anyio.move_on_after(self.cancel_timeout_s) as scope:
                try:
                    run_ids = [run_id] if run_id is not None else await self._own_active_runs()
                    self.cancelled_runs.extend(run_ids)
                    await self._requests.agents.messages.cancel(
                        agent_id=agent, run_ids=run_ids, timeout=self.cancel_timeout_s
                    )
                except (letta_client.LettaError, httpx.HTTPError) as exc:
                    logger.warning("cancelling run %s of agent %s failed: %s", run_id, agent, exc)
            if scope.cancelled_caught:
                logger.warning("cancelling run %s of agent %s timed out", run_id, agent)
            if self.fresh_conversation:
                await self._discard()

    async def _own_active_runs(self) -> list[str]:
        # The request is in flight: the server may not have created the run yet. Poll this
        # conversation's active runs until it has (the caller's deadline bounds the wait). One
        # fan-out never runs two streams on one conversation, so what is found is ours.
        delay = 0.02
        while True:
            page = await self._requests.runs.list(
                agent_id=self._letta_agent_id,
                statuses=["created", "running"],
                limit=20,
                timeout=self.cancel_timeout_s,
                conversation_id=omit if self.conversation_id is None else self.conversation_id,
            )
            found = [
                run.id
                for run in page.items
                if run.agent_id == self._letta_agent_id
                and run.conversation_id == self.conversation_id
            ]
            if found:
                return found
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.25)
