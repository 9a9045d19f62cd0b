"""Server-Sent Events frames straight from the body's bytes, for the per-token path.

httpx-sse decodes the body to text, splits it into lines and runs a decoder object per line,
building a ``ServerSentEvent`` per frame; a Letta stream is one short ``data:`` line per token,
so that machinery cost more than the frame's JSON. :class:`SSEFrames` cuts the bytes at the
blank line that ends a frame and hands out ``(event, data)`` as bytes, which orjson reads
without a text copy. A frame that is a single ``data: ...`` line (every Letta token) takes a
short path; anything else goes through the field rules of the WHATWG event-stream format, as
httpx-sse applies them: ``\\r\\n``, ``\\r`` and ``\\n`` end lines, one space after the colon
is dropped, ``data`` lines join with ``\\n``, comments and unknown fields are skipped, and a
frame is dispatched when it had any field (the event name defaults to ``message``). A frame
the body ends in without its blank line is not dispatched.
"""

from __future__ import annotations

__all__ = ["SSEFrames"]

_MESSAGE = b"message"


class SSEFrames:
    """An incremental SSE parser: :meth:`feed` body chunks, get the complete frames."""

    __slots__ = ("_buffer", "_crlf", "_data", "_event", "_last_id", "_lines", "_retry")

    def __init__(self) -> None:
        self._buffer = b""
        self._crlf = False
        # Line by line (below) once the stream sent an ``id`` field: the last event id is
        # never reset, so from then on every blank line dispatches a frame.
        self._lines = False
        self._last_id = b""
        self._event = b""
        self._data: list[bytes] = []
        self._retry = False

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        """The ``(event, data)`` of every frame that ``chunk`` completes, in order."""
        buffer = self._buffer + chunk if self._buffer else chunk
        held = b""
        if self._crlf or b"\r" in chunk:
            self._crlf = True
            # A chunk may end between \r and \n: keep a trailing \r for the next one.
            if buffer.endswith(b"\r"):
                buffer, held = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._lines or buffer.startswith(b"id:") or b"\nid:" in buffer:
            self._lines = True
            lines = buffer.split(b"\n")
            self._buffer = lines.pop() + held
            return self._decode_lines(lines)
        blocks = buffer.split(b"\n\n")
        self._buffer = blocks.pop() + held
        out: list[tuple[bytes, bytes]] = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                out.append((_MESSAGE, block[6:]))  # one token: the short path
                continue
            # Several lines, event names, comments. A block that starts with \n (three
            # line ends in a row) starts with an empty line: nothing to dispatch there.
            self._decode_lines(block.split(b"\n"))
            frame = self._dispatch()
            if frame is not None:
                out.append(frame)
        return out

    def _decode_lines(self, lines: list[bytes]) -> list[tuple[bytes, bytes]]:
        # The field rules, line by line; an empty line dispatches (line mode only: blocks
        # hold no empty line but a leading one, which dispatches nothing without an id).
        out: list[tuple[bytes, bytes]] = []
        for line in lines:
            if not line:
                if self._lines:
                    frame = self._dispatch()
                    if frame is not None:
                        out.append(frame)
                continue
            if line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._event = value
            elif name == b"id":
                if b"\0" not in value:
                    self._last_id = value
            elif name == b"retry":
                self._retry = self._retry or _is_int(value)
        return out

    def _dispatch(self) -> tuple[bytes, bytes] | None:
        event, data, retry = self._event, self._data, self._retry
        self._event, self._data, self._retry = b"", [], False
        if not event and not data and not self._last_id and not retry:
            return None
        return (event or _MESSAGE, b"\n".join(data))


def _is_int(value: bytes) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True
