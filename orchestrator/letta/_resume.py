"""Reading one background run's stream across reconnections, each chunk exactly once.

A Letta server with Redis (``background=True``) stores every chunk of a run under
``sse:run:{run_id}`` with a sequence number (1, 2, 3 ...) and serves the same chunks to the
request that started the run and to ``POST /v1/runs/{run_id}/stream {starting_after}``, which
replays the chunks after a sequence number and then follows the run. Messages carry that
number as ``seq_id``; the stop reason and usage chunks do not, and keepalive pings (added per
connection, not stored) repeat the last one. So :class:`RunReader` counts the stored frames
it has read since the last ``seq_id`` it saw: a reconnection asks for what follows that
``seq_id`` and drops as many frames as were already read after it.

The same reader numbers what the mapper makes of the frames: every source event gets
``cursor``, the count of source events of this run so far (``agent_start`` is 1). Mapping
is deterministic over the stored frames (pings add nothing once the run started), so a
replay of the run from its start through a fresh mapper numbers every event as the first
reading did; a revived source hands out only the events past the cursor its hub logged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from .._core._events import SourceEvent
from ._mapping import LettaMapper

__all__ = ["RunReader", "loads"]


def loads(data: bytes) -> Any:
    """One frame's JSON: orjson, else Python's json for what orjson refuses."""
    # What orjson refuses and Python's json reads (NaN, lone surrogates, huge integers, bytes
    # that are not UTF-8, decoded as httpx would) goes to json as before.
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data.decode("utf-8", "replace"))


class RunReader:
    """One run's position in its stored stream, and the numbering of its source events.

    ``skip_to``: events with a cursor up to it are counted but not handed out (a revived
    source's hub already logged them). ``drop_start``: ``agent_start`` is not handed out
    (logged already, with no cursor). ``start_fields`` are added to ``agent_start``.
    """

    __slots__ = (
        "_pending",
        "after_seq",
        "count",
        "done",
        "drop_start",
        "frames",
        "last_seq",
        "mapper",
        "skip_to",
        "start_fields",
    )

    def __init__(
        self,
        mapper: LettaMapper,
        *,
        skip_to: int = 0,
        drop_start: bool = False,
        start_fields: Mapping[str, Any] | None = None,
    ) -> None:
        self.mapper = mapper
        self.skip_to = skip_to
        self.drop_start = drop_start
        self.start_fields = dict(start_fields or {})
        #: Source events made so far: the cursor of the newest one.
        self.count = 0
        #: Stored frames read (pings are not counted: they are not all stored).
        self.frames = 0
        #: The newest ``seq_id`` read, and the stored frames read after it.
        self.last_seq: int | None = None
        self.after_seq = 0
        #: ``[DONE]`` or an error frame was read: the run's stream is over.
        self.done = False
        self._pending = 0

    def resume_after(self) -> int | None:
        """``starting_after`` for a reconnection; the frames past it already read are dropped."""
        self._pending = self.after_seq
        return self.last_seq

    def replay(self) -> None:
        """The next body replays the run from its first chunk: drop every frame already read."""
        self._pending = self.frames

    def frame(self, event: bytes, data: bytes) -> list[SourceEvent]:
        """The numbered source events of one SSE frame (``event`` name, ``data`` bytes)."""
        if data.startswith(b"[DONE]"):
            self.done = True
            return []
        if event == b"message":
            item = loads(data)
            get = item.get if isinstance(item, dict) else None
            if get is not None and get("message_type") == "ping":
                # Only the first ping matters (it starts the run and names it).
                return [] if self.mapper.started else self.number(self.mapper.feed(item))
            if self._pending:
                self._pending -= 1
                return []
            self._advance(get("seq_id") if get is not None else None)
            return self.number(self.mapper.feed(item))
        if event == b"error":
            if self._pending:
                self._pending -= 1
                return []
            self._advance(None)
            self.done = True
            return self.number(self.mapper.error_frame(data.decode("utf-8", "replace")))
        return []

    def _advance(self, seq_id: object) -> None:
        self.frames += 1
        if type(seq_id) is int:
            self.last_seq = seq_id
            self.after_seq = 0
        else:
            self.after_seq += 1

    def number(self, events: list[SourceEvent]) -> list[SourceEvent]:
        """``events`` with their cursors, less those a revived source must not repeat."""
        out: list[SourceEvent] = []
        for sev in events:
            self.count += 1
            if self.count <= self.skip_to:
                continue
            data = sev.data
            if sev.type == "agent_start":
                if self.drop_start:
                    continue
                data = {**data, **self.start_fields}
            out.append(SourceEvent(sev.type, {**data, "cursor": self.count}))
        return out
