"""Blind mode: a fan-out's events with the agents hidden behind opaque ids, in random order.

``POST /v1/fanouts/{id}/blind`` draws, once per fan-out, a random order of its columns and
an opaque id for each (``b`` + 12 hex digits, from ``secrets``), and answers with the
columns as the page may show them: ``Answer A``, ``Answer B``, ... in that order.
``GET /v1/fanouts/{id}/blind/events`` is the fan-out's SSE stream (same ``id:``, resume and
end) with every event rewritten: ``agent_id`` is the opaque id, ``label`` the letter, and
only fields that cannot name an agent are kept (no model, Letta agent id, conversation,
run id or error text; message and tool call ids are replaced by keyed hashes).
``fanout_start`` lists the columns in the drawn order.

A vote may name the opaque ids (``POST /v1/fanouts/{id}/votes``): they are mapped back to
the real columns, and the answer reveals which agent each opaque id was.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import string
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import HTTPConnection

from orchestrator import Event, FanOutExpiredError, FanOutHub, HubFanOut

from ._errors import ApiError, error_body, error_responses
from ._fanouts import _SSE_RESPONSE, _EventStream
from ._json import dumps
from ._state import State, find

# Included by the arena router (prefix /v1).
router = APIRouter(prefix="/fanouts", tags=["arena"])

#: Blind maps kept (the oldest is forgotten first); a fan-out outlives it only in the hub.
MAX_BLIND = 10_000

# What each event type may keep of its payload in blind mode: nothing that names an agent.
_KEEP: dict[str, frozenset[str]] = {
    "fanout_start": frozenset({"prompt", "options"}),
    "agent_start": frozenset(),
    "reasoning": frozenset({"delta", "message_id"}),
    "content": frozenset({"delta", "message_id"}),
    "tool_call": frozenset({"name", "arguments", "tool_call_id"}),
    "tool_result": frozenset({"status", "result", "tool_call_id"}),
    "usage": frozenset({"prompt_tokens", "completion_tokens", "total_tokens", "step_count"}),
    "agent_done": frozenset({"stop_reason", "text_length", "metrics"}),
    "agent_error": frozenset({"code", "retryable"}),
    "agent_cancelled": frozenset({"reason"}),
    "fanout_done": frozenset({"counts", "duration_s"}),
}
_SUMMARY_KEEP = frozenset({"state", "events", "stop_reason", "text_length", "code", "metrics"})
_HASHED = ("message_id", "tool_call_id")


def _letter(n: int) -> str:
    letters = string.ascii_uppercase
    return letters[n] if n < len(letters) else letters[n // 26 - 1] + letters[n % 26]


@dataclass
class BlindMap:
    """One fan-out's hidden columns: the drawn order and the opaque id of each column."""

    fanout_id: str
    order: list[str]
    to_blind: dict[str, str]
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(16), repr=False)

    @classmethod
    def draw(cls, fanout_id: str, columns: list[str]) -> BlindMap:
        order = list(columns)
        secrets.SystemRandom().shuffle(order)
        return cls(fanout_id, order, {c: "b" + secrets.token_hex(6) for c in order})

    def to_json(self) -> str:
        """The map as one JSON text (what the hub keeps for the other replicas)."""
        return dumps({"order": self.order, "to_blind": self.to_blind, "secret": self.secret.hex()})

    @classmethod
    def from_json(cls, fanout_id: str, text: str) -> BlindMap:
        """A map :meth:`to_json` wrote (raises ``ValueError`` for anything else)."""
        data = json.loads(text)
        return cls(
            fanout_id, list(data["order"]), dict(data["to_blind"]), bytes.fromhex(data["secret"])
        )

    @property
    def to_real(self) -> dict[str, str]:
        return {opaque: real for real, opaque in self.to_blind.items()}

    def label(self, column: str) -> str:
        return f"Answer {_letter(self.order.index(column))}"

    def columns(self) -> list[dict[str, str]]:
        return [{"column_id": self.to_blind[c], "label": self.label(c)} for c in self.order]

    def hide(self, value: Any) -> str:
        digest = hmac.new(self.secret, str(value).encode(), hashlib.sha256).hexdigest()
        return "h" + digest[:16]

    def event(self, event: Event) -> dict[str, Any]:
        """The event as the blind page sees it."""
        full = event.to_dict()
        keep = _KEEP.get(event.type, frozenset())
        out: dict[str, Any] = {
            "v": full["v"],
            "type": event.type,
            "fanout_id": event.fanout_id,
            "agent_id": None,
            "label": None,
            "seq": event.seq,
            "index": event.index,
            "t": full["t"],
        }
        column = event.agent_id
        if column is not None:
            out["agent_id"] = self.to_blind.get(column, self.hide(column))
            out["label"] = self.label(column) if column in self.to_blind else "Answer ?"
        for key in keep:
            if key in full:
                value = full[key]
                out[key] = self.hide(value) if key in _HASHED and value is not None else value
        if event.type == "fanout_start":
            out["agents"] = [
                {"agent_id": c["column_id"], "label": c["label"]} for c in self.columns()
            ]
        elif event.type == "fanout_done":
            summary: Mapping[str, Any] = full.get("summary") or {}
            out["summary"] = {
                self.to_blind[c]: {
                    "label": self.label(c),
                    **{k: v for k, v in summary[c].items() if k in _SUMMARY_KEEP},
                }
                for c in self.order
                if c in summary
            }
        return out


class BlindMaps:
    """The app's blind maps, one per fan-out that a page watches blind.

    The map is drawn once per fan-out for every replica: it is kept in the hub (in Redis with
    several replicas; the first replica to draw wins), and cached here.
    """

    def __init__(self, limit: int = MAX_BLIND) -> None:
        self.limit = limit
        self._maps: OrderedDict[str, BlindMap] = OrderedDict()

    async def get(self, fanout_id: str, hub: FanOutHub) -> BlindMap | None:
        found = self._maps.get(fanout_id)
        if found is None:
            kept = await hub.recall(_note(fanout_id))
            if kept is not None:
                found = self._cache(BlindMap.from_json(fanout_id, kept))
        return found

    async def get_or_draw(self, entry: HubFanOut, hub: FanOutHub) -> BlindMap:
        found = await self.get(entry.fanout_id, hub)
        if found is None:
            drawn = BlindMap.draw(entry.fanout_id, list(entry.agents))
            kept = await hub.remember(_note(entry.fanout_id), drawn.to_json(), keep_existing=True)
            found = self._cache(BlindMap.from_json(entry.fanout_id, kept))
        return found

    def _cache(self, found: BlindMap) -> BlindMap:
        self._maps[found.fanout_id] = found
        while len(self._maps) > self.limit:
            self._maps.popitem(last=False)
        return found


def _note(fanout_id: str) -> str:
    return f"blind:{fanout_id}"


def blind_maps(conn: HTTPConnection) -> BlindMaps:
    """The app's :class:`BlindMaps` (created on first use)."""
    maps: BlindMaps | None = getattr(conn.app.state, "blind", None)
    if maps is None:
        maps = conn.app.state.blind = BlindMaps()
    return maps


class BlindColumn(BaseModel):
    """A column as the blind page shows it."""

    column_id: str
    label: str


class BlindView(BaseModel):
    """Answer of ``POST /v1/fanouts/{id}/blind``: the columns in their drawn order."""

    fanout_id: str
    events_url: str
    columns: list[BlindColumn]


def blind_events_url(fanout_id: str) -> str:
    return f"/v1/fanouts/{fanout_id}/blind/events"


@router.post(
    "/{fanout_id}/blind",
    status_code=201,
    response_model=BlindView,
    responses=error_responses(404, 410, 503),
    summary="Watch a fan-out blind",
)
async def start_blind(fanout_id: str, conn: HTTPConnection, state: State) -> dict[str, Any]:
    """Hide the fan-out's agents: opaque column ids in a random order (drawn once per
    fan-out), labelled `Answer A`, `Answer B`, ...; read the events at `events_url`."""
    entry = await find(state, fanout_id)
    hidden = await blind_maps(conn).get_or_draw(entry, state.require_hub())
    return {
        "fanout_id": fanout_id,
        "events_url": blind_events_url(fanout_id),
        "columns": hidden.columns(),
    }


@router.get(
    "/{fanout_id}/blind/events",
    response_class=EventSourceResponse,
    responses={**_SSE_RESPONSE, **error_responses(404, 410, 422, 503)},
)
async def blind_events(
    fanout_id: str,
    conn: HTTPConnection,
    state: State,
    after: Annotated[
        int | None, Query(ge=-1, description="Replay events after this index.")
    ] = None,
    last_event_id: Annotated[int | None, Header(ge=-1)] = None,
) -> EventSourceResponse:
    """The fan-out's events with its agents hidden (see `POST /v1/fanouts/{id}/blind`);
    resumable like the plain events endpoint."""
    entry = await find(state, fanout_id)
    hidden = await blind_maps(conn).get_or_draw(entry, state.require_hub())
    start = last_event_id if last_event_id is not None else after
    after_index = -1 if start is None else start
    try:
        entry.log.check(after_index)
    except FanOutExpiredError as exc:
        raise ApiError(410, "events_expired", str(exc)) from None

    async def on_client_close(message: Any) -> None:
        entry.client_gone()

    return _EventStream(
        entry.fanout_id,
        _blind_sse(entry, hidden, after_index),
        ping=state.settings.ping_s,
        send_timeout=state.settings.send_timeout_s,
        client_close_handler_callable=on_client_close,
        headers={"X-Fanout-Id": entry.fanout_id},
    )


async def _blind_sse(
    entry: HubFanOut, hidden: BlindMap, after: int
) -> AsyncIterator[ServerSentEvent]:
    try:
        async with entry.watch(after) as sub:
            async for event in sub:
                yield ServerSentEvent(
                    data=dumps(hidden.event(event)), event=event.type, id=str(event.index)
                )
    except FanOutExpiredError as exc:
        body = error_body("events_expired", str(exc))["error"]
        yield ServerSentEvent(data=dumps(body), event="error")
