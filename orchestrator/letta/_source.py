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

With ``background=True`` (a Letta server with Redis) the run is started as a background run
(``conversations.messages.create(..., background=True)``; the agent's default conversation
as ``"default"`` with ``agent_id``, so the server locks it and deduplicates retries). The
user message carries an ``otid`` made once per :meth:`LettaSource.stream`, so a start that
is retried after the request may have reached the server joins the run it started instead
of sending the prompt twice. A connection that breaks mid-answer is picked up again with
``runs.messages.stream(run_id, starting_after=...)`` through the same mapper (see
``_resume.py``), and every source event carries ``cursor``. A hub that lost the replica
running a source rebuilds it elsewhere with :meth:`LettaSource.revived` from the
:class:`~orchestrator.Checkpoint` it logged (``resume_spec()`` is its recipe). docs/letta.md
tells the whole story.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

import anyio
import httpx
import letta_client
from letta_client import AsyncLetta, omit
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from .._core._events import SourceEvent
from .._core._exceptions import ConfigError, SourceError
from .._core._source import Checkpoint
from ._client import _is_connect_failure, _is_transient, _without_retries
from ._client import connect_retrying as connect_retrying
from ._client import create_letta_client as create_letta_client
from ._client import default_base_url as default_base_url
from ._mapping import LettaMapper, classify_error, error_event
from ._resume import RunReader
from ._resume import loads as _loads
from ._sse import SSEFrames

__all__ = ["LettaSource", "connect_retrying", "create_letta_client", "default_base_url"]

logger = logging.getLogger("orchestrator.letta")


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

    ``background`` (needs Redis on the Letta server) starts background runs: a start that
    fails in any way before the answer began is retried with the same message ``otid``, a
    connection that breaks mid-answer is resumed from the run's stored stream (up to
    ``resume_retries`` attempts in a row without progress, with the same backoff), and
    every event carries ``cursor`` (1 for ``agent_start``, then 2, 3 ...). ``resumes``
    counts the reconnections. A run that cannot be resumed (the server has no Redis, the
    run is unknown, attempts exhausted) ends with ``agent_error`` ``unavailable``.
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
        background: bool = False,
        resume_retries: int = 5,
        connect_retries: int = 3,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 2.0,
        cancel_timeout_s: float = 2.0,
    ) -> None:
        if not agent_id:
            raise ConfigError("LettaSource needs a non-empty agent_id")
        if connect_retries < 0 or resume_retries < 0 or retry_initial_s < 0 or retry_max_s < 0:
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
        self.background = background
        self.resume_retries = resume_retries
        self.connect_retries = connect_retries
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.cancel_timeout_s = cancel_timeout_s
        self._response: httpx.Response | None = None
        self._mapper: LettaMapper | None = None
        self._requested = False
        self._run_pending = False
        self.attempts = 0
        self.resumes = 0
        self.resume_attempts = 0
        self.otid: str | None = None
        self.run_ids: list[str] = []
        self.cancelled_runs: list[str] = []
        self._owns_conversation = fresh_conversation
        self._checkpoint: Checkpoint | None = None
        self._known_run_id: str | None = None

    @classmethod
    def revived(cls, client: AsyncLetta, checkpoint: Checkpoint, **options: Any) -> LettaSource:
        """A source that continues the run of ``checkpoint`` (a hub's takeover).

        Its :meth:`stream` sends nothing: it replays the background run ``checkpoint.run_id``
        from its start through a fresh mapper, hands out only the events past
        ``checkpoint.cursor`` (without ``agent_start`` when ``checkpoint.started``), then
        follows the run live, resuming as usual when the connection breaks. When the run
        cannot be continued (not a background source, no run id, a server without Redis, an
        unknown run) it cancels the run on the server and ends with ``agent_error``
        ``replica_lost`` (retryable). ``options`` are :class:`LettaSource` settings (retries,
        timeouts); the agent, conversation, model and mode come from ``checkpoint.spec``
        (a :meth:`resume_spec`). Raises :class:`ConfigError` for a spec of another kind.
        """
        spec = checkpoint.spec
        letta_agent_id = spec.get("letta_agent_id")
        if spec.get("kind") != "letta" or not isinstance(letta_agent_id, str):
            raise ConfigError(f"not a Letta source's resume spec: {dict(spec)!r}")
        taken = ("conversation_id", "model", "column_id", "label", "background", "stream_tokens")
        settings = {k: v for k, v in options.items() if k not in taken}
        settings.pop("fresh_conversation", None)
        source = cls(
            client,
            letta_agent_id,
            conversation_id=spec.get("conversation_id") or None,
            model=spec.get("model") or None,
            column_id=checkpoint.agent_id,
            label=checkpoint.label,
            background=bool(spec.get("background")),
            stream_tokens=bool(spec.get("stream_tokens", True)),
            keep_conversation=bool(spec.get("keep_conversation", True)),
            **settings,
        )
        source._owns_conversation = bool(spec.get("fresh_conversation"))
        source._checkpoint = checkpoint
        source._known_run_id = checkpoint.run_id
        return source

    def resume_spec(self) -> Mapping[str, Any]:
        """How to rebuild this source on another replica (JSON, no secrets; see :meth:`revived`).

        For a ``fresh_conversation`` source it names the conversation of its current stream.
        """
        return {
            "kind": "letta",
            "letta_agent_id": self._letta_agent_id,
            "column_id": self._agent_id,
            "label": self._label,
            "conversation_id": self.conversation_id,
            "model": self.model,
            "background": self.background,
            "stream_tokens": self.stream_tokens,
            "fresh_conversation": self._owns_conversation,
            "keep_conversation": self.keep_conversation,
        }

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
        known = self._mapper.run_id if self._mapper is not None else None
        return known or self._known_run_id

    def stream(self, message: str) -> AsyncIterator[SourceEvent]:
        """Send ``message`` to the agent and stream its answer as source events.

        A source made by :meth:`revived` sends nothing: it continues its checkpoint's run.
        """
        if self._checkpoint is not None:
            return self._stream_revived(self._checkpoint)
        return self._stream(message)

    async def _stream(self, message: str) -> AsyncIterator[SourceEvent]:
        mapper = self._mapper = LettaMapper()
        self._requested = False
        self._known_run_id = None
        self.otid = str(uuid.uuid4())
        reader = RunReader(mapper) if self.background else None
        response: httpx.Response | None = None
        if self.fresh_conversation:
            try:
                created = await self._requests.conversations.create(agent_id=self._letta_agent_id)
            except Exception as exc:
                for sev in self._numbered(reader, mapper.fail(exc, agent_id=self._letta_agent_id)):
                    yield sev
                return
            self.conversation_id = created.id
            self.conversations.append(created.id)
            if reader is not None:
                reader.start_fields["conversation_id"] = created.id
        try:
            try:
                response = self._response = await self._open(message)
            except Exception as exc:
                # Refused or unreachable: no run exists that cancel() would have to stop.
                if isinstance(exc, letta_client.APIStatusError) or _is_connect_failure(exc):
                    self._requested = False
                for sev in self._numbered(reader, mapper.fail(exc, agent_id=self._letta_agent_id)):
                    yield sev
                return
            if reader is not None:
                async with aclosing(self._follow(response, reader, message)) as followed:
                    async for sev in followed:
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
            await self._close_responses(response)
            if self._owns_conversation and (mapper.ended or not self._requested):
                # The run is over (or never started): nothing runs in the conversation now.
                await self._discard()

    @staticmethod
    def _numbered(reader: RunReader | None, events: list[SourceEvent]) -> list[SourceEvent]:
        return events if reader is None else reader.number(events)

    async def _close_responses(self, response: httpx.Response | None) -> None:
        current, self._response = self._response, None
        with anyio.CancelScope(shield=True):
            for each in (response, current):
                if each is not None:
                    await each.aclose()

    async def _stream_revived(self, checkpoint: Checkpoint) -> AsyncIterator[SourceEvent]:
        mapper = self._mapper = LettaMapper()
        self._requested = True  # the run exists: cancel() must stop it
        reader = RunReader(
            mapper,
            skip_to=checkpoint.cursor or 0,
            drop_start=checkpoint.started,
            start_fields={"conversation_id": self.conversation_id}
            if self._owns_conversation
            else None,
        )
        run_id = checkpoint.run_id
        try:
            if not self.background or run_id is None:
                why = "it was not a background run" if not self.background else "no run id"
                async for sev in self._lose(reader, why):
                    yield sev
                return
            if self._owns_conversation and self.conversation_id is None:
                # The spec was taken before the stream made its conversation: the run knows it.
                await self._learn_conversation(run_id, reader)
            try:
                response = self._response = await self._open_run(run_id, None)
            except Exception as exc:
                async for sev in self._lose(reader, classify_error(exc).message):
                    yield sev
                return
            async with aclosing(self._follow(response, reader, None)) as events:
                async for sev in events:
                    yield sev
        finally:
            await self._close_responses(None)
            if self._owns_conversation and mapper.ended:
                await self._discard()

    async def _learn_conversation(self, run_id: str, reader: RunReader) -> None:
        try:
            run = await self._requests.runs.retrieve(run_id, timeout=self.cancel_timeout_s)
        except (letta_client.LettaError, httpx.HTTPError) as exc:
            logger.warning("looking up the conversation of run %s failed: %s", run_id, exc)
            return
        conversation_id = getattr(run, "conversation_id", None)
        if isinstance(conversation_id, str) and conversation_id:
            self.conversation_id = conversation_id
            reader.start_fields["conversation_id"] = conversation_id

    async def _lose(self, reader: RunReader, why: str) -> AsyncGenerator[SourceEvent, None]:
        # A revived source that cannot continue its run: stop the run, tell the hub.
        await self._cancel_run()
        error = error_event(
            "replica_lost",
            f"the run of agent {self._letta_agent_id!r} could not be continued after its "
            f"replica was lost ({why}); it was cancelled",
            retryable=True,
        )
        error.data["cursor"] = max(reader.count, reader.skip_to) + 1
        yield error

    async def _follow(
        self, response: httpx.Response, reader: RunReader, message: str | None
    ) -> AsyncGenerator[SourceEvent, None]:
        # Read a background run's bodies until the run's stream ends; a body that breaks or
        # ends early is followed by the next one from where the reader is.
        mapper = reader.mapper
        idle = 0  # bodies in a row that brought nothing new
        while True:
            frames = SSEFrames().feed
            before = (reader.frames, reader.count)
            broken: BaseException | None = None
            try:
                async for chunk in response.aiter_bytes():
                    for event, data in frames(chunk):
                        events = reader.frame(event, data)
                        if self._run_pending and mapper.run_id is not None:
                            self._run_pending = False
                            self.run_ids.append(mapper.run_id)
                        for sev in events:
                            yield sev
                        if reader.done:
                            break
                    if reader.done:
                        break
            except (httpx.TransportError, letta_client.APIConnectionError) as exc:
                broken = exc  # the connection, not the run: pick the run up again
            except Exception as exc:
                for sev in reader.number(mapper.fail(exc, agent_id=self._letta_agent_id)):
                    yield sev
                return
            finally:
                self._response = None
                with anyio.CancelScope(shield=True):
                    await response.aclose()
            if reader.done:
                break
            idle = 0 if (reader.frames, reader.count) != before else idle + 1
            logger.info(
                "stream of run %s broke (%s); resuming after seq_id %s",
                self.run_id,
                broken or "the body ended early",
                reader.last_seq,
            )
            try:
                if idle > self.resume_retries:
                    raise broken or SourceError(
                        "the run's stream keeps ending early", code="unavailable", retryable=True
                    )
                if idle:
                    await anyio.sleep(self._backoff(idle))
                response = self._response = await self._reconnect(reader, message)
            except Exception as exc:
                if mapper.stop_reason is not None:
                    break  # the answer is complete; at most the usage is missing
                if self._checkpoint is not None:
                    async for sev in self._lose(reader, classify_error(exc).message):
                        yield sev
                    return
                cause = f"{classify_error(broken).message}; " if broken is not None else ""
                error = SourceError(
                    f"{cause}the run could not be resumed: {classify_error(exc).message}",
                    code="unavailable",
                    retryable=True,
                )
                for sev in reader.number(mapper.fail(error)):
                    yield sev
                return
        for sev in reader.number(mapper.finish()):
            yield sev

    def _backoff(self, attempt: int) -> float:
        wait = min(self.retry_max_s, self.retry_initial_s * 2.0 ** (attempt - 1))
        return wait * (0.5 + random.random() / 2)

    async def _reconnect(self, reader: RunReader, message: str | None) -> httpx.Response:
        run_id = self.run_id
        if run_id is None:
            if message is None:
                raise SourceError("no run id to resume", code="unavailable", retryable=True)
            # The run never named itself: send the request again with the same otid; the
            # server answers with the stream of the run it already started, from its start.
            reader.replay()
            response = await self._open(message)
        else:
            response = await self._open_run(run_id, reader.resume_after())
        self.resumes += 1
        return response

    async def _open_run(self, run_id: str, starting_after: int | None) -> httpx.Response:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.resume_retries + 1),
            wait=wait_exponential_jitter(
                multiplier=self.retry_initial_s, max=self.retry_max_s, jitter=self.retry_initial_s
            ),
            retry=retry_if_exception(_is_transient),
            sleep=anyio.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                self.resume_attempts += 1
                request = self._requests.runs.messages.with_streaming_response.stream(
                    run_id,
                    starting_after=omit if starting_after is None else starting_after,
                    include_pings=True,
                )
                return await self._send(request)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

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
        if self.background:
            # The message's otid makes a repeated start join the run it began, if any.
            retrying = retrying.copy(retry=retry_if_exception(_is_transient))
        async for attempt in retrying:
            with attempt:
                self.attempts += 1
                self._requested = True
                self._run_pending = self.run_id is None
                # The SDK builds and sends the request (base URL, auth, headers, timeouts, its
                # connection pool) and raises its usual errors for a refused request; the
                # body is left unread for us.
                return await self._send(self._request(message))
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _send(self, request: Any) -> httpx.Response:
        # Entering the manager only sends the request; what its exit would do (close the
        # response) stream() and cancel() do on the response itself.
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

    def _request(self, message: str) -> Any:
        extra: dict[str, Any] = {} if self.model is None else {"override_model": self.model}
        messages: Any = [{"role": "user", "content": message, "otid": self.otid}]
        if self.background:
            extra.update(background=True, include_pings=True)
            if self.conversation_id is None:
                # Agent-direct mode of the conversations endpoint: unlike agents.messages, the
                # server locks the agent's default conversation there, which is what makes it
                # deduplicate a repeated otid.
                return self._requests.conversations.messages.with_streaming_response.create(
                    "default",
                    agent_id=self._letta_agent_id,
                    messages=messages,
                    streaming=True,
                    stream_tokens=self.stream_tokens,
                    **extra,
                )
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
            await self._cancel_run()
            if self._owns_conversation:
                await self._discard()

    async def _cancel_run(self) -> None:
        # Shielded and time-boxed; by run id when known, else this conversation's active runs.
        self._requested = False
        run_id = self.run_id
        agent = self._letta_agent_id
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.cancel_timeout_s) as scope:
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
