"""The translators alone: what reaches the encoders is always writable."""

from __future__ import annotations

from typing import Any

import orjson
from ag_ui.encoder import EventEncoder

from api._agui import AgUiTranslator
from api._aisdk import UiMessageTranslator, encode
from orchestrator import Event


def event(kind: str, index: int, agent: str | None = "a", **data: Any) -> Event:
    return Event.from_dict(
        {
            "v": 1,
            "type": kind,
            "fanout_id": "f-1",
            "agent_id": agent,
            "label": agent,
            "seq": index,
            "index": index,
            "t": 0.0,
            **data,
        }
    )


def test_upstream_text_that_is_not_unicode_goes_out_with_replacement_characters() -> None:
    # A Letta server can put a lone surrogate in an agent's text: the stream goes on.
    bad = "x\ud800y"
    stream = [
        event(
            "fanout_start",
            0,
            None,
            prompt="p",
            agents=[{"agent_id": "a", "label": bad}],
            options={},
        ),
        event("content", 1, delta=bad, message_id="m"),
        event("tool_call", 2, name=bad, arguments={bad: bad}, tool_call_id="c"),
        event("tool_result", 3, tool_call_id="c", status="success", result=bad),
        event("agent_error", 4, code="x", message=bad, retryable=False),
        event("fanout_done", 5, None, summary={"a": {"label": bad}}, counts={}, duration_s=0.0),
    ]
    encoder = EventEncoder()
    translator = AgUiTranslator("t", "r", subagents=True)
    written = [encoder.encode(out) for e in stream for out in translator.translate(e)]
    assert translator.finished
    assert all("\ud800" not in text for text in written)
    assert any("x\ufffdy" in orjson.loads(text[6:]).get("delta", "") for text in written)

    parts = UiMessageTranslator("f-1", "a")
    body = b"".join(encode(p) for e in stream for p in parts.translate(e))
    assert "x\ufffdy".encode() in body
    assert parts.done


def test_empty_deltas_are_never_sent() -> None:
    translator = AgUiTranslator("t", "r")
    assert translator.translate(event("content", 1, delta="", message_id="m")) == []
    assert translator.translate(event("reasoning", 2, delta="", message_id="r")) == []
    parts = UiMessageTranslator("f-1", "a")
    assert parts.translate(event("content", 1, delta="", message_id="m")) == []
