"""Fault: an SSE client that reads a few bytes and then stops reading.

The client is a raw socket with a tiny receive buffer, and the server's listening socket has
a tiny send buffer, so the kernel holds only a few kilobytes between them. Then:

- memory stays bounded: the hub's log stops at ``max_log_events``, the per-agent buffers
  fill and pause the sources (their ``produced`` counts stop growing) long before the
  answers end, and the RSS stays far below what buffering the whole answers would take;
- the configured send timeout ends the response cleanly: no traceback in the server's log,
  the fan-out ends (cancelled with reason ``disconnect``, or run to the end with
  ``on_disconnect: continue``) and the server's task count returns to its baseline.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from api import ApiSettings
from orchestrator import ScriptedDirectory, ScriptedSource
from tests._wait import wait_until_sync

from ._server import ServerProbe, rss_mb, serve_in_thread, tracebacks

pytestmark = pytest.mark.slow

TOKEN = "lorem ipsum dolor "
LONG = 200_000  # tokens per agent: ~50 MB of SSE per agent if it were all buffered
SHORT = 3_000
AGENTS = ("fast-1", "fast-2", "fast-3")
MAX_LOG = 200
BUFFER = 16
TINY = 4096


def _fast(tokens: int) -> Any:
    def factory(agent_id: str, label: str) -> ScriptedSource:
        return ScriptedSource(agent_id, [TOKEN] * tokens, label=label)

    return factory


def _directory(tokens: int) -> ScriptedDirectory:
    return ScriptedDirectory({a: _fast(tokens) for a in AGENTS})


@contextmanager
def stalled_client(port: int, options: dict[str, Any]) -> Iterator[socket.socket]:
    """POST a streaming fan-out, read the first bytes of the response, then stop reading."""
    body = json.dumps(
        {"agents": [{"agent_id": a} for a in AGENTS], "message": "go", "options": options}
    ).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TINY)
    sock.settimeout(30)
    try:
        sock.connect(("127.0.0.1", port))
        head = (
            "POST /v1/fanouts HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        first = sock.recv(64)
        assert first.startswith(b"HTTP/1.1 200"), first
        yield sock
    finally:
        sock.close()


def _new_fanout(probe: ServerProbe) -> str:
    """The id of the one fan-out that has not ended yet."""

    def running() -> list[str]:
        return probe.call(lambda: [f.fanout_id for f in probe.hub.recent() if f.running])

    wait_until_sync(lambda: bool(running()), "the fan-out to start")
    (fanout_id,) = running()
    return fanout_id


def _summary(probe: ServerProbe, fanout_id: str) -> dict[str, Any]:
    return probe.call(lambda: probe.hub.get(fanout_id).summary())


def _produced(probe: ServerProbe) -> list[int]:
    return [s.produced for s in probe.directory.created]


def _settings(send_timeout_s: float) -> ApiSettings:
    return ApiSettings(max_log_events=MAX_LOG, send_timeout_s=send_timeout_s, ping_s=600)


def test_a_stalled_reader_pauses_the_sources_and_memory_stays_bounded() -> None:
    with serve_in_thread(_directory(LONG), _settings(send_timeout_s=600), sndbuf=TINY) as probe:
        rss_before = rss_mb()
        options = {"buffer": BUFFER, "overflow": "block", "on_disconnect": "cancel"}
        with stalled_client(probe.port, options):
            fanout_id = _new_fanout(probe)

            def settled() -> bool:
                # Paused at the start too (before the merger first runs): wait until the
                # log is full, every source waits for space, and a few hundred turns of the
                # server's loop produce nothing more.
                before = _produced(probe)
                for _ in range(20):
                    summary = _summary(probe, fanout_id)
                full = summary["events"] - summary["first_retained_index"] == MAX_LOG
                paused = all(a.get("paused") for a in summary["agents"].values())
                return full and paused and _produced(probe) == before

            wait_until_sync(settled, "the stalled reader to pause every source")
            produced = _produced(probe)
            summary = _summary(probe, fanout_id)
            assert all(n < LONG / 10 for n in produced), produced
            assert summary["events"] - summary["first_retained_index"] <= MAX_LOG
            assert all(a["buffered"] <= BUFFER for a in summary["agents"].values())
            grown = rss_mb() - rss_before
            print(f"\nstalled reader: produced {produced}, RSS +{grown:.1f} MB")
            assert grown < 40, f"RSS grew by {grown:.1f} MB while the reader was stalled"
        wait_until_sync(lambda: fanout_id in probe.done, "the fan-out to end after the drop")
        counts = probe.done[fanout_id].data["counts"]
        assert counts == {"done": 0, "error": 0, "cancelled": 3}
        assert all(s.cancel_calls == 1 and s.closed for s in probe.directory.created)


@pytest.mark.parametrize("on_disconnect", ["cancel", "continue"])
def test_the_send_timeout_ends_a_stalled_reader_cleanly(
    on_disconnect: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    tokens = LONG if on_disconnect == "cancel" else SHORT
    with serve_in_thread(_directory(tokens), _settings(send_timeout_s=1.0), sndbuf=TINY) as probe:
        baseline = probe.task_names()
        with stalled_client(probe.port, {"on_disconnect": on_disconnect}) as sock:
            fanout_id = _new_fanout(probe)
            # The client never reads again; only the send timeout can end the response.
            wait_until_sync(lambda: fanout_id in probe.done, "the send timeout to end the response")
            sock.settimeout(30)
            rest = b""
            while chunk := sock.recv(65536):  # the server closed the connection
                rest += chunk
            assert b"fanout_done" not in rest
        wait_until_sync(lambda: probe.active_fanouts() == 0, "the fan-out to end")
        wait_until_sync(
            lambda: probe.task_names() == baseline, f"the server's tasks back to {baseline}"
        )
        done = probe.done[fanout_id].data
        if on_disconnect == "cancel":
            assert done["counts"] == {"done": 0, "error": 0, "cancelled": 3}
            assert {a["reason"] for a in done["summary"].values()} == {"disconnect"}
            assert all(s.cancel_calls == 1 and s.closed for s in probe.directory.created)
        else:
            assert done["counts"] == {"done": 3, "error": 0, "cancelled": 0}
            assert all(s.cancel_calls == 0 and s.closed for s in probe.directory.created)
    assert not tracebacks(caplog.records), tracebacks(caplog.records)
    dropped = [r.getMessage() for r in caplog.records if r.name == "api"]
    assert dropped == [f"fan-out {fanout_id}: SSE client took no data for 1.0 s, dropping it"]
    # uvicorn says (one line, no traceback) that it closed a response it could not complete.
    errors = {r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR}
    assert errors <= {"ASGI callable returned without completing response."}, errors
