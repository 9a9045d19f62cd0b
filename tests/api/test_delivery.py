"""The wire side of readers: SSE frames in batches, delivery windows, gzip (api/_delivery)."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from sse_starlette import ServerSentEvent
from starlette.types import Message

from api._delivery import GzipSend, accepts_gzip, coalesce, encode_sse
from orchestrator import Event


def _event(index: int, kind: str, agent: str | None, **data: Any) -> Event:
    seq = index + 1 if agent is not None else 0
    return Event(kind, "f-1", agent, agent, seq, index, 0.001 * index, data)  # type: ignore[arg-type]


def _content(index: int, agent: str, delta: str, message: str = "m1") -> Event:
    return _event(index, "content", agent, delta=delta, message_id=message)


def test_a_frame_is_what_sse_starlette_writes_for_the_event() -> None:
    events = [
        _event(0, "fanout_start", None, prompt="p", agents=[], options={}),
        _content(1, "a", 'Grüße ✓ \n\r\u2028 "q"'),
        _event(2, "agent_done", "a", stop_reason="end_turn", text_length=3, metrics={}),
    ]
    for event in events:
        theirs = ServerSentEvent(data=event.to_json(), event=event.type, id=str(event.index))
        assert encode_sse(event) == theirs.encode()
        no_id = ServerSentEvent(data=event.to_json(), event=event.type)
        assert encode_sse(event, with_id=False) == no_id.encode()


def test_a_frame_with_text_that_is_not_unicode_is_repaired() -> None:
    event = _content(3, "a", "bad \ud800 text")
    frame = encode_sse(event)
    assert frame.startswith(b"id: 3\r\nevent: content\r\ndata: {")
    assert "bad \ufffd text" in frame.decode()


def _interleaved() -> list[Event]:
    # Two agents' deltas interleave, as the merger hands them out; b changes message once
    # and a has a tool call between its deltas.
    plan = [
        ("a", "content", "He", "m1"),
        ("b", "content", "Bon", "m2"),
        ("a", "content", "llo", "m1"),
        ("b", "content", "jour", "m2"),
        ("a", "tool_call", "", ""),
        ("b", "reasoning", "hm", "m3"),
        ("a", "content", " you", "m1"),
        ("b", "reasoning", "m", "m3"),
        ("a", "content", "!", "m1"),
    ]
    out = []
    for index, (agent, kind, delta, message) in enumerate(plan, start=10):
        if kind == "tool_call":
            out.append(_event(index, kind, agent, name="look", arguments={}, tool_call_id="c"))
        else:
            out.append(_event(index, kind, agent, delta=delta, message_id=message))
    return out


def test_a_window_merges_consecutive_deltas_per_agent_and_message() -> None:
    events = _interleaved()
    sent = coalesce(events)
    merged = [event for event, _ in sent]
    assert [(e.agent_id, e.type, e.delta, e.index) for e in merged] == [
        ("a", "content", "Hello", 12),
        ("b", "content", "Bonjour", 13),
        ("a", "tool_call", "", 14),
        ("b", "reasoning", "hmm", 17),
        ("a", "content", " you!", 18),
    ]
    # The text per agent, type and message is the text of the deltas.
    for agent in ("a", "b"):
        for kind in ("content", "reasoning"):
            ours = "".join(e.delta for e in merged if e.agent_id == agent and e.type == kind)
            theirs = "".join(e.delta for e in events if e.agent_id == agent and e.type == kind)
            assert ours == theirs
    # An event's id is sent only when every index up to it is covered by then.
    assert [with_id for _, with_id in sent] == [False, True, True, False, True]
    assert merged[1].seq == events[3].seq
    assert merged[1].t == events[3].t


def test_ids_sent_are_exact_resume_points() -> None:
    events = _interleaved()
    sent = coalesce(events)
    for position, (event, with_id) in enumerate(sent):
        if not with_id:
            continue
        # Everything up to this id is in what was sent so far, and nothing after it is.
        so_far = sent[: position + 1]
        assert max(e.index for e, _ in so_far) == event.index
        for agent in ("a", "b"):
            ours = "".join(e.delta for e, _ in so_far if e.agent_id == agent)
            assert ours == "".join(
                e.delta for e in events if e.agent_id == agent and e.index <= event.index
            )
    assert sent[-1][1] is True


def test_a_window_without_text_is_left_alone() -> None:
    events = [_event(0, "fanout_start", None), _event(1, "agent_start", "a", run_id=None)]
    assert coalesce(events) == [(events[0], True), (events[1], True)]
    assert coalesce([]) == []


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("", False),
        ("*", True),
        ("gzip;q=x", False),
    ],
)
def test_accept_encoding(header: str, ok: bool) -> None:
    assert accepts_gzip(header) is ok


async def test_gzip_send_flushes_every_message_and_finishes_the_stream() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    gzip = GzipSend(send)
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"9")]}
    await gzip(start)
    frames = [encode_sse(_content(k, "a", f"tok{k} ")) for k in range(5)]
    for frame in frames:
        await gzip({"type": "http.response.body", "body": frame, "more_body": True})
    await gzip({"type": "http.response.body", "body": b"", "more_body": False})
    headers = dict(sent[0]["headers"])
    assert headers[b"content-encoding"] == b"gzip"
    assert b"content-length" not in headers
    decoder = zlib.decompressobj(31)
    # Each message decodes whole on arrival: nothing waits in the compressor.
    for frame, message in zip(frames, sent[1:], strict=False):
        assert decoder.decompress(message["body"]) == frame
    assert decoder.decompress(sent[-1]["body"]) == b""
    assert decoder.eof
    assert gzip.raw_bytes == sum(len(f) for f in frames)
