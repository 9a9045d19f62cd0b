"""``Sessions``: sets of Letta conversations that receive fan-outs together.

A session has members, one per column: a Letta agent, a conversation of its own on the
server, a label and optionally a model (sent as ``override_model``). The same agent may be
a member several times, with different models: one agent, three models side by side. Every
fan-out of a session goes to its members' conversations, so two sessions on the same agents
never see each other's turns, and the agents' default conversations are left alone. Memory
blocks are per agent on a Letta server: all conversations of an agent share them.

The session (members, turns, final answers) lives in the SQL database of a
:class:`SessionStore`; answer texts are read back from the server when the thread is shown.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import letta_client
from letta_client import AsyncLetta

from .._core._events import Event
from .._core._exceptions import ConfigError
from .._core._fanout import FanOut, open_fanout
from .._core._options import FanOutOptions
from .._core._result import AgentResult
from .._hub._hub import FanOutHub, HubFanOut, OnDisconnect
from ..letta._directory import LettaDirectory
from ..letta._mapping import classify_error
from ..letta._source import LettaSource
from ._model import Answer, SessionMember, SessionRecord, Turn
from ._store import SessionStore

__all__ = ["MemberSpec", "Session", "Sessions"]

logger = logging.getLogger("orchestrator.sessions")


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """A member to create: an agent by ``agent_id`` or ``name``, a label, a model handle."""

    agent_id: str | None = None
    name: str | None = None
    label: str | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if not (self.agent_id or self.name):
            raise ConfigError("a session member needs 'agent_id' or 'name'")


@dataclass(frozen=True)
class Session:
    """One session of a :class:`Sessions` service: its members, and what to do with it.

    ``members`` are in column order; each has the column id its events carry. The methods
    are those of the service for this session (``open_fanout``, ``fork``, ``thread``,
    ``delete``).
    """

    record: SessionRecord
    service: Sessions = field(compare=False, repr=False)

    @property
    def session_id(self) -> str:
        return self.record.session_id

    @property
    def members(self) -> tuple[SessionMember, ...]:
        return self.record.members

    @property
    def title(self) -> str | None:
        return self.record.title

    @property
    def parent_id(self) -> str | None:
        return self.record.parent_id

    def to_json(self) -> dict[str, Any]:
        """The session as the HTTP API shows it (without its thread)."""
        return self.record.to_json()

    def sources(self) -> list[LettaSource]:
        """One source per member, streaming through the member's conversation."""
        return self.service.sources(self.record)

    def open_fanout(
        self, message: str, options: FanOutOptions | None = None, **overrides: Any
    ) -> AbstractAsyncContextManager[FanOut]:
        """A fan-out to the members' conversations (see :meth:`Sessions.open_fanout`)."""
        return self.service.open_fanout(self.session_id, message, options, **overrides)

    async def fork(self, *, title: str | None = None) -> Session:
        """A Letta fork of this session (see :meth:`Sessions.fork`)."""
        return await self.service.fork(self.session_id, title=title)

    async def thread(self) -> list[Turn]:
        """The turns so far, answers read from the server (see :meth:`Sessions.thread`)."""
        return await self.service.thread(self.session_id)

    async def delete(self, *, delete_conversations: bool = True) -> None:
        """Forget this session (and delete its conversations on the server)."""
        await self.service.delete(self.session_id, delete_conversations=delete_conversations)


class Sessions:
    """Sessions over the conversations of one Letta server, kept in a :class:`SessionStore`.

    ``directory`` resolves agent names and supplies the shared client. Every method that
    takes a session id raises :class:`UnknownSessionError` for an unknown one; server
    failures raise :class:`~orchestrator.SourceError` (classified as for streams).
    ``source_options`` go to every :class:`LettaSource` (retries, cancel timeout).
    """

    def __init__(
        self, store: SessionStore, directory: LettaDirectory, **source_options: Any
    ) -> None:
        self.store = store
        self.directory = directory
        self.source_options = {**directory.source_options, **source_options}
        # Fan-outs of sessions run by a hub: fanout id -> (session id, texts per column).
        self._tracked: dict[str, tuple[str, dict[str, list[str]], dict[str, str | None]]] = {}
        self._finished: list[tuple[str, str, dict[str, Answer]]] = []
        self._started: list[HubFanOut] = []
        self._wake = anyio.Event()

    @property
    def client(self) -> AsyncLetta:
        return self.directory.client

    # -- sessions -------------------------------------------------------------------------

    async def create(
        self,
        agents: Sequence[MemberSpec | str],
        *,
        title: str | None = None,
        session_id: str | None = None,
    ) -> Session:
        """A new session with one fresh conversation per member, in the given order.

        Strings are agent ids. ``session_id`` chooses the id (an AG-UI thread id, say);
        by default a new one is drawn. Raises :class:`ConfigError` naming an agent that
        does not exist (nothing is created then) and :class:`SourceError` when the server
        fails.
        """
        specs = [MemberSpec(agent_id=a) if isinstance(a, str) else a for a in agents]
        if not specs:
            raise ConfigError("a session needs at least one agent")
        resolved = [await self._resolve(n, spec) for n, spec in enumerate(specs)]
        counts = Counter(agent_id for agent_id, _ in resolved)
        seen: Counter[str] = Counter()
        created: list[str] = []
        members: list[SessionMember] = []
        try:
            for spec, (agent_id, name) in zip(specs, resolved, strict=True):
                seen[agent_id] += 1
                twice = counts[agent_id] > 1
                column = f"{agent_id}.{seen[agent_id]}" if twice else agent_id
                label = spec.label or (
                    f"{name} ({spec.model or 'default model'})" if twice else name
                )
                conversation = await self.client.conversations.create(agent_id=agent_id)
                created.append(conversation.id)
                members.append(SessionMember(column, agent_id, conversation.id, label, spec.model))
            labels = [m.label for m in members]
            if len(set(labels)) != len(labels):
                members = [
                    m if labels.count(m.label) == 1 else _relabel(m, n)
                    for n, m in enumerate(members, 1)
                ]
            record = SessionRecord(
                session_id or f"s-{uuid.uuid4().hex[:12]}", tuple(members), title, None, time.time()
            )
            await self.store.add_session(record)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._delete_conversations(created)
            raise
        return Session(record, self)

    async def _resolve(self, n: int, spec: MemberSpec) -> tuple[str, str]:
        try:
            if spec.agent_id is not None:
                agent = await self.client.agents.retrieve(spec.agent_id)
                return agent.id, agent.name or agent.id
            info = await self.directory.find(spec.name or "")
        except letta_client.NotFoundError:
            info = None
        except letta_client.UnprocessableEntityError:
            info = None
        except Exception as exc:
            raise classify_error(exc) from exc
        if info is None:
            ref = spec.agent_id or spec.name
            raise ConfigError(f"agents[{n}]: no agent {ref!r} on the Letta server")
        return info.agent_id, info.name

    async def get(self, session_id: str) -> Session:
        """The session of that id."""
        return Session(await self.store.get_session(session_id), self)

    async def recent(self, limit: int = 100) -> list[Session]:
        """The newest sessions first."""
        return [Session(record, self) for record in await self.store.list_sessions(limit)]

    async def delete(self, session_id: str, *, delete_conversations: bool = True) -> None:
        """Forget a session and (by default) delete its conversations on the server."""
        record = await self.store.delete_session(session_id)
        if delete_conversations:
            await self._delete_conversations([m.conversation_id for m in record.members])

    async def _delete_conversations(self, ids: Sequence[str]) -> None:
        for conversation_id in ids:
            try:
                await self.client.conversations.delete(conversation_id)
            except Exception as exc:  # best effort: the session is gone either way
                logger.warning("deleting conversation %s failed: %s", conversation_id, exc)

    async def fork(self, session_id: str, *, title: str | None = None) -> Session:
        """A new session whose conversations are Letta forks of this one's.

        The fork starts with the parent's turns (on the server and in its thread) and then
        goes its own way; the parent is unchanged.
        """
        parent = await self.store.get_session(session_id)
        created: list[str] = []
        try:
            members = []
            for member in parent.members:
                try:
                    fork = await self.client.conversations.fork(member.conversation_id)
                except Exception as exc:
                    raise classify_error(exc, agent_id=member.agent_id) from exc
                created.append(fork.id)
                members.append(
                    SessionMember(
                        member.column_id, member.agent_id, fork.id, member.label, member.model
                    )
                )
            record = SessionRecord(
                f"s-{uuid.uuid4().hex[:12]}",
                tuple(members),
                title if title is not None else parent.title,
                parent.session_id,
                time.time(),
            )
            await self.store.add_session(record)
            await self.store.copy_turns(parent.session_id, record.session_id)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._delete_conversations(created)
            raise
        return Session(record, self)

    async def thread(self, session_id: str) -> list[Turn]:
        """The session's turns: each prompt and every member's answer.

        Answer texts come from the members' conversations on the Letta server (joined by run
        id), so the thread shows what the agents actually have in their history; answers
        the server does not have (failed, cancelled early) are as recorded.
        """
        record = await self.store.get_session(session_id)
        stored = await self.store.turns(session_id)
        texts: dict[str, str] = {}
        for member in record.members:
            texts.update(await self._run_texts(member))
        unwritten = self._unwritten()
        out: list[Turn] = []
        for turn in stored:
            live = unwritten.get(turn.fanout_id, {})
            answers = {}
            for column, a in turn.answers.items():
                if column in live:
                    now = live[column]
                    answers[column] = Answer(a.label, now.text, now.state, now.run_id, now.error)
                    continue
                text = texts.get(a.run_id, a.text) if a.run_id else a.text
                answers[column] = Answer(a.label, text, a.state, a.run_id, a.error)
            out.append(Turn(turn.fanout_id, turn.message, turn.created_at, answers))
        return out

    async def _run_texts(self, member: SessionMember) -> dict[str, str]:
        texts: dict[str, str] = {}
        try:
            async for message in self.client.conversations.messages.list(
                member.conversation_id, order="asc", limit=100
            ):
                if getattr(message, "message_type", None) != "assistant_message":
                    continue
                run_id = getattr(message, "run_id", None)
                if run_id:
                    texts[run_id] = texts.get(run_id, "") + _text(getattr(message, "content", ""))
        except Exception as exc:
            logger.warning("reading conversation %s failed: %s", member.conversation_id, exc)
        return texts

    # -- fan-outs -------------------------------------------------------------------------

    def sources(self, session: SessionRecord | Session) -> list[LettaSource]:
        """One source per member, streaming through the member's conversation."""
        record = session.record if isinstance(session, Session) else session
        return [
            LettaSource(
                self.client,
                m.agent_id,
                conversation_id=m.conversation_id,
                model=m.model,
                column_id=m.column_id,
                label=m.label,
                **self.source_options,
            )
            for m in record.members
        ]

    @asynccontextmanager
    async def open_fanout(
        self,
        session_id: str,
        message: str,
        options: FanOutOptions | None = None,
        **overrides: Any,
    ) -> AsyncIterator[FanOut]:
        """:func:`~orchestrator.open_fanout` to a session's members; the turn is recorded.

        Raises :class:`ConversationBusyError` before anything starts when a fan-out of this
        process still runs in one of the session's conversations.
        """
        record = await self.store.get_session(session_id)
        fanout_id = f"f-{uuid.uuid4().hex[:12]}"
        async with open_fanout(
            self.sources(record), message, options, fanout_id=fanout_id, **overrides
        ) as fanout:
            await self.store.add_turn(session_id, fanout_id, message, _labels(record))
            yield fanout
        with anyio.CancelScope(shield=True):
            await self.store.record_answers(
                session_id, fanout_id, {c: _answer(r) for c, r in fanout.result().agents.items()}
            )

    async def start(
        self,
        hub: FanOutHub,
        session_id: str,
        message: str,
        options: FanOutOptions | None = None,
        *,
        on_disconnect: OnDisconnect = "cancel",
    ) -> HubFanOut:
        """Start a session's fan-out in ``hub``; the turn is recorded, its answers at the end.

        The hub must pass its events to :meth:`observe` (``hub.add_observer``) and
        :meth:`run_recorder` must run for the answers to be written. Raises what
        :meth:`FanOutHub.start` raises (``ConversationBusyError`` among them) before
        anything starts.
        """
        record = await self.store.get_session(session_id)
        sources = self.sources(record)
        fanout_id = f"f-{uuid.uuid4().hex[:12]}"
        # The turn exists before the fan-out can end, so its answers always have rows to fill.
        await self.store.add_turn(session_id, fanout_id, message, _labels(record))
        try:
            entry = await hub.submit(
                sources, message, options, on_disconnect=on_disconnect, fanout_id=fanout_id
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.store.remove_turn(session_id, fanout_id)
            raise
        self._tracked[fanout_id] = (
            session_id,
            {m.column_id: [] for m in record.members},
            {m.column_id: None for m in record.members},
        )
        self._started.append(entry)
        self._wake.set()
        return entry

    async def adopt(self, fanout_id: str, logged: Sequence[Event]) -> None:
        """Hub takeover hook: record the answers of a session fan-out this replica took over.

        The replica that started it died; its turn is found by ``fanout_id`` in the shared
        database, ``logged`` (the events so far) is replayed into the answers, and
        :meth:`observe` goes on with the continuation. Not a session's fan-out: nothing.
        """
        found = await self.store.running_turn(fanout_id)
        if found is None or fanout_id in self._tracked:
            return
        session_id, columns = found
        self._tracked[fanout_id] = (
            session_id,
            {column: [] for column in columns},
            dict.fromkeys(columns),
        )
        for event in logged:
            self.observe(event)

    def observe(self, event: Event) -> None:
        """Hub observer: collects the answers of the session fan-outs started here."""
        tracked = self._tracked.get(event.fanout_id)
        if tracked is None:
            return
        _, parts, runs = tracked
        if event.type == "content" and event.agent_id in parts:
            parts[event.agent_id].append(event.delta)
        elif event.type == "agent_start" and event.agent_id in runs:
            runs[event.agent_id] = event.get("run_id") or runs[event.agent_id]
        elif event.type == "fanout_done":
            self._finish(event.fanout_id, event.get("summary") or {})

    def _finish(
        self, fanout_id: str, summary: Mapping[str, Any], failure: str | None = None
    ) -> None:
        session_id, parts, runs = self._tracked.pop(fanout_id)
        answers: dict[str, Answer] = {}
        for column, texts in parts.items():
            entry = summary.get(column) or {}
            error = entry.get("error")
            answers[column] = Answer(
                str(entry.get("label") or column),
                "".join(texts),
                str(entry.get("state") or ("error" if failure else "cancelled")),
                runs[column],
                str(error.get("message")) if isinstance(error, Mapping) else failure,
            )
        self._finished.append((session_id, fanout_id, answers))
        self._wake.set()

    async def run_recorder(self) -> None:
        """Write the answers :meth:`observe` collected, until cancelled (run it in a task).

        A fan-out that ends without ``fanout_done`` (it failed in the hub) is recorded too,
        its answers as ``error``.
        """
        try:
            async with anyio.create_task_group() as tg:
                while True:
                    await self._wake.wait()
                    self._wake = anyio.Event()
                    while self._started:
                        tg.start_soon(self._await_end, self._started.pop())
                    await self._flush()
        finally:
            with anyio.CancelScope(shield=True):
                await self._flush()

    async def _await_end(self, entry: HubFanOut) -> None:
        await entry.wait()
        if entry.fanout_id in self._tracked:
            self._finish(entry.fanout_id, {}, entry.error or "the fan-out ended early")

    async def _flush(self) -> None:
        # Shielded: a write that started must finish, or the turn would stay "running".
        with anyio.CancelScope(shield=True):
            while self._finished:
                session_id, fanout_id, answers = self._finished[0]
                try:
                    await self.store.record_answers(session_id, fanout_id, answers)
                except Exception:
                    logger.exception("recording the answers of %s failed", fanout_id)
                self._finished.pop(0)

    def _unwritten(self) -> dict[str, dict[str, Answer]]:
        # Answers not in the database yet: fan-outs still running, and finished ones whose
        # write is queued. A thread read meanwhile shows them as they are.
        out = {fanout_id: answers for _, fanout_id, answers in self._finished}
        for fanout_id, (_, parts, runs) in self._tracked.items():
            out[fanout_id] = {
                column: Answer(column, "".join(texts), "running", runs[column])
                for column, texts in parts.items()
            }
        return out


def _relabel(member: SessionMember, n: int) -> SessionMember:
    return SessionMember(
        member.column_id,
        member.agent_id,
        member.conversation_id,
        f"{member.label} #{n}",
        member.model,
    )


def _labels(record: SessionRecord) -> dict[str, str]:
    return {m.column_id: m.label for m in record.members}


def _answer(result: AgentResult) -> Answer:
    return Answer(
        result.label,
        result.text,
        result.state,
        result.run_id,
        result.error.message if result.error is not None else None,
    )


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(getattr(part, "text", "") or "") for part in content)
    return ""
