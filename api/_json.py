"""Strict JSON out: what the SSE and WebSocket paths write, always valid for any parser.

orjson writes strict JSON (no ``NaN``, no ``Infinity``) and refuses a string that is not
Unicode text (a lone surrogate). The API refuses such strings where clients send them, but
an upstream server can still put one in an agent's text; such an event goes out with
U+FFFD in place of each lone surrogate instead of ending the stream or the socket.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

from orchestrator import Event

__all__ = ["dumps", "event_json"]

logger = logging.getLogger("api")

_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(obj: Any) -> str:
    """``obj`` as strict JSON text; lone surrogates become U+FFFD."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return orjson.dumps(_replace_surrogates(obj)).decode()


def event_json(event: Event) -> str:
    """The event's JSON (``Event.to_json``), repaired when its text is not Unicode."""
    try:
        return event.to_json()
    except TypeError:
        logger.warning(
            "fan-out %s: event %d holds text that is not Unicode; sent with U+FFFD instead",
            event.fanout_id,
            event.index,
        )
        return dumps(event.to_dict())


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_replace_surrogates(item) for item in value]
    return value
