"""``SSEFrames`` gives the frames httpx-sse gives, however the body is cut into chunks."""

from __future__ import annotations

import random

import pytest
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from orchestrator.letta._sse import SSEFrames

BODIES = {
    "letta_tokens": (
        b'data: {"message_type":"ping","run_id":"run-1"}\n\n'
        + b"".join(
            b'data: {"message_type":"assistant_message","content":" w%d"}\n\n' % k
            for k in range(40)
        )
        + b'data: {"message_type":"stop_reason","stop_reason":"end_turn"}\n\n'
        + b"data: [DONE]\n\n"
    ),
    "error_event": b'event: error\ndata: {"error_type":"llm_error"}\n\ndata: [DONE]\n\n',
    "crlf_and_cr": b"data: a\r\n\r\ndata: b\r\rdata: c\r\ndata: d\r\n\r\n",
    "multi_line_data": b"data: one\ndata: two\ndata:three\n\n",
    "comments_and_unknown": b": keep-alive\n\nfoo: bar\n\n:c\ndata: x\n\n",
    "empty_data_and_event": b"data:\n\nevent:\n\nevent: named\n\n",
    "blank_runs": b"\n\n\ndata: a\n\n\n\n\ndata: b\n\n",
    "retry_and_ids": b"retry: 10\n\nretry: no\n\nid: 7\n\n\n\ndata: z\n\n",
    "id_with_nul": b"id: a\x00b\n\ndata: y\n\n",
    "id_later": b"data: a\n\n\n\ndata: b\r\nid: 1\ndata: c\n\n\n\nevent: e\ndata: d\n\n",
    "unfinished_last": b"data: done\n\ndata: cut off\n",
    "utf8": "data: héllo wörld ✓\n\n".encode(),
}


def _reference(body: bytes, cuts: list[int]) -> list[tuple[str, str]]:
    # httpx-sse over the same chunks, as EventSource.aiter_sse runs it (text, lines, fields).
    lines = SSELineDecoder()
    decoder = SSEDecoder()
    out: list[tuple[str, str]] = []
    text = body.decode()
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    for piece in pieces:
        if not piece:
            continue
        for line in lines.decode(piece):
            sse = decoder.decode(line)
            if sse is not None:
                out.append((sse.event, sse.data))
    for line in lines.flush():
        sse = decoder.decode(line)
        if sse is not None:
            out.append((sse.event, sse.data))
    return out


def _ours(body: bytes, cuts: list[int]) -> list[tuple[str, str]]:
    frames = SSEFrames()
    out: list[tuple[bytes, bytes]] = []
    for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True):
        if a < b:
            out.extend(frames.feed(body[a:b]))
    return [(event.decode(), data.decode()) for event, data in out]


@pytest.mark.parametrize("name", sorted(BODIES))
def test_frames_match_httpx_sse_for_every_chunking(name: str) -> None:
    body = BODIES[name]
    if name == "utf8":
        cuts_of: list[list[int]] = [[]]  # text and byte offsets differ: whole body only
    else:
        rng = random.Random(name)
        cuts_of = [[], list(range(1, len(body)))]  # whole, and one byte at a time
        for _ in range(200):
            k = rng.randint(1, min(8, len(body) - 1))
            cuts_of.append(sorted(rng.sample(range(1, len(body)), k)))
    expected = _reference(body, [])
    assert expected, "every body has at least one frame"
    for cuts in cuts_of:
        assert _ours(body, cuts) == expected, cuts
        assert _reference(body, cuts) == expected, cuts  # the reference itself is stable


def test_a_frame_split_inside_a_utf8_character_is_whole() -> None:
    body = "data: ✓✓\n\n".encode()
    for cut in range(1, len(body)):
        assert _ours(body, [cut]) == [("message", "✓✓")]
