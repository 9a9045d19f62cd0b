"""The event protocol: one frozen, typed shape for Python, SSE, WebSocket and JSONL.

JSON shape (version 1, see ``orchestrator/_core/schema/event.schema.json``)::

    {"v": 1, "type": "content", "fanout_id": "f-1a2b", "agent_id": "agent-1",
     "label": "critic", "seq": 3, "index": 7, "t": 0.4182,
     "delta": "Hel", "message_id": "m-1"}

The envelope fields are always present; the payload fields depend on ``type`` and sit at the
top level beside them. ``agent_id`` and ``label`` are null and ``seq`` is 0 on fan-out level
events (``fanout_start``, ``fanout_done``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, cast

import orjson

from ._exceptions import EventFormatError
from ._types import EVENT_TYPES, JSON, TERMINAL_TYPES, EventType

#: Version of the JSON shape; bumped on any incompatible change.
PROTOCOL_VERSION = 1

_ENVELOPE = ("v", "type", "fanout_id", "agent_id", "label", "seq", "index", "t")
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_DATA = 7  # position of the payload in an Event
# The tuple's own item access and iteration, which Event overrides to hand out views.
_item = cast("Callable[[tuple[Any, ...], Any], Any]", tuple.__getitem__)
_iter = cast("Callable[[tuple[Any, ...]], Iterator[Any]]", tuple.__iter__)


class Event(NamedTuple):
    """One event of the merged stream: an immutable, typed record.

    ``seq`` counts an agent's events from 1; ``index`` is the position in the merged stream
    from 0 (and the SSE ``id:``); ``t`` is seconds since the fan-out started (monotonic), taken
    when the event arrived from its source. Type-specific fields live in ``data`` and are
    flattened into the JSON. It is a named tuple because the merger builds one per token,
    and that is the cheapest immutable record with named fields (docs/architecture.md).

    The payload is read-only from outside: ``data``, indexing and iteration hand out a
    ``MappingProxyType`` view of it, made when asked for rather than per event, since
    ``delta``, ``get()`` and ``to_json()`` read the payload directly.
    """

    type: EventType
    fanout_id: str
    agent_id: str | None
    label: str | None
    seq: int
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose: protocol name
    t: float
    data: Mapping[str, Any] = _EMPTY

    @property
    def is_terminal(self) -> bool:
        """True for ``agent_done``, ``agent_error`` and ``agent_cancelled``."""
        return self.type in TERMINAL_TYPES

    @property
    def delta(self) -> str:
        """The text of a ``content`` or ``reasoning`` event; empty for other types."""
        return cast(str, _item(self, _DATA).get("delta", ""))

    @property
    def message_id(self) -> str | None:
        """The message a delta belongs to; deltas of one message share it."""
        return cast("str | None", _item(self, _DATA).get("message_id"))

    def get(self, key: str, default: Any = None) -> Any:
        """A payload field, or ``default`` when this event has none of that name."""
        return _item(self, _DATA).get(key, default)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            return tuple(self)[key]
        return _read_only_data(self) if key in (_DATA, -1) else _item(self, key)  # data is last

    def __iter__(self) -> Iterator[Any]:
        items = _iter(self)
        for _ in range(_DATA):
            yield next(items)
        yield _read_only_data(self)

    def to_dict(self) -> JSON:
        """The event as a JSON-ready dict (envelope plus flattened payload)."""
        out: JSON = {
            "v": PROTOCOL_VERSION,
            "type": self.type,
            "fanout_id": self.fanout_id,
            "agent_id": self.agent_id,
            "label": self.label,
            "seq": self.seq,
            "index": self.index,
            "t": round(self.t, 6),
        }
        out.update(_item(self, _DATA))
        return out

    def to_json(self) -> str:
        """The event as one line of compact JSON (UTF-8 text, no newline inside)."""
        # orjson: a server serialises every event once per stream; this is the SSE path's
        # largest cost per event (docs/architecture.md).
        return orjson.dumps(self.to_dict()).decode()

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Event:
        """Rebuild an event from :meth:`to_dict` output.

        Raises :class:`EventFormatError` naming the field when the shape is wrong.
        """
        if not isinstance(obj, Mapping):
            raise EventFormatError(f"an event must be a JSON object, got {type(obj).__name__}")
        version = obj.get("v", PROTOCOL_VERSION)
        if version != PROTOCOL_VERSION:
            raise EventFormatError(f"unsupported event version {version!r}")
        etype = obj.get("type")
        if etype not in EVENT_TYPES:
            raise EventFormatError(f"field 'type': unknown event type {etype!r}")
        for name, kinds in (
            ("fanout_id", (str,)),
            ("seq", (int,)),
            ("index", (int,)),
            ("t", (int, float)),
        ):
            value = obj.get(name)
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise EventFormatError(
                    f"field {name!r}: expected {kinds[0].__name__}, got {value!r}"
                )
        for name in ("agent_id", "label"):
            if obj.get(name) is not None and not isinstance(obj[name], str):
                raise EventFormatError(f"field {name!r}: expected a string or null")
        data = {k: v for k, v in obj.items() if k not in _ENVELOPE}
        return cls(
            type=cast(EventType, etype),
            fanout_id=obj["fanout_id"],
            agent_id=obj.get("agent_id"),
            label=obj.get("label"),
            seq=obj["seq"],
            index=obj["index"],
            t=float(obj["t"]),
            data=data,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        """Parse one event from JSON text; raises :class:`EventFormatError` when invalid."""
        try:
            obj = orjson.loads(text)
        except ValueError as exc:
            raise EventFormatError(f"not valid JSON: {exc}") from None
        return cls.from_dict(obj)


def _read_only_data(event: Event) -> Mapping[str, Any]:
    """Type-specific fields (a read-only view)."""
    return MappingProxyType(_item(event, _DATA))


# The named tuple's own accessor would hand out the stored dict itself.
Event.data = property(_read_only_data, doc="Type-specific fields (a read-only view).")  # type: ignore[assignment]


#: The one way an :class:`Event` is built: ``build_event(Event, (type, fanout_id, agent_id,
#: label, seq, index, t, data))``. It is ``tuple.__new__``, which skips the named tuple's
#: keyword-handling constructor: the merger builds one event per token.
build_event = cast("Callable[[type[Event], tuple[Any, ...]], Event]", tuple.__new__)


class SourceEvent(NamedTuple):
    """What a :class:`~orchestrator.Source` yields: an event type and its payload.

    The fan-out adds the envelope (ids, ``seq``, ``index``, ``t``). Sources yield
    ``agent_start`` (optional, with ``run_id``), ``reasoning`` / ``content`` (``delta``,
    ``message_id``), ``tool_call``, ``tool_result``, ``usage`` and at most one terminal
    ``agent_done`` (``stop_reason``) or ``agent_error`` (``code``, ``message``,
    ``retryable``). A source that simply ends is done with ``stop_reason="end_turn"``; one
    that raises ends with ``agent_error``.
    """

    type: EventType
    data: JSON

    @classmethod
    def content(cls, delta: str, message_id: str | None = None) -> SourceEvent:
        """A text delta of the answer."""
        return cls("content", {"delta": delta, "message_id": message_id})

    @classmethod
    def reasoning(cls, delta: str, message_id: str | None = None) -> SourceEvent:
        """A text delta of the agent's reasoning."""
        return cls("reasoning", {"delta": delta, "message_id": message_id})


def event_schema() -> JSON:
    """The JSON Schema (draft 2020-12) of the event's JSON shape."""
    from importlib.resources import files

    text = files("orchestrator._core").joinpath("schema/event.schema.json").read_text("utf-8")
    return cast(JSON, json.loads(text))
