"""Bad input against the WebSocket protocol (``WS /v1/ws``), served by a real uvicorn.

While client A runs a fan-out over its socket, hypothesis-generated garbage frames (random
JSON, frames of the right shape with wrong types, huge strings, binary frames, bytes that
are not UTF-8, lone surrogates and control characters in JSON strings, ``NaN`` and
``Infinity``, nesting up to 100 000 levels deep) go to a second socket B and also to A
itself. Every bad frame gets an error frame, both sockets stay open, the server stays up,
every frame the server sends is strict JSON, and A's fan-out arrives complete: indices
0..N-1 without a gap, each agent's text exactly the scripted text.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

from api._models import CancelFrame, StartFrame

from .conftest import Live, serve_live
from .scripted import WORDS

#: The fan-out client A runs, and the text each agent must deliver.
AGENTS = {"alpha": "Hello, world.", "paced-1": "".join(WORDS), "paced-2": "".join(WORDS)}

Frame = str | bytes

#: Strings a frame may carry as JSON escapes: lone surrogates, control characters and
#: characters outside the BMP among ordinary ones.
hostile_text = st.text(
    st.one_of(
        st.characters(),
        st.characters(categories=["Cs"]),
        st.characters(categories=["Cc"]),
        st.characters(min_codepoint=0x10000),
    ),
    max_size=20,
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),  # NaN and Infinity too: json.dumps writes them, strict JSON has neither
        hostile_text,
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner),
    max_leaves=12,
)
#: Frames that look like the real ones, with fields of the wrong type or value.
shaped = st.fixed_dictionaries(
    {"type": st.sampled_from(["start", "cancel", "stop", "", "START"]) | json_values},
    optional={
        "agents": json_values
        | st.lists(st.fixed_dictionaries({}, optional={"agent_id": json_values})),
        "message": json_values,
        "options": json_values
        | st.fixed_dictionaries(
            {}, optional={"buffer": json_values, "policy": json_values, "timeout_s": json_values}
        ),
        "fanout_id": json_values,
        "agent_id": json_values,
        "request_id": json_values,
        "extra": json_values,
    },
)
huge = st.integers(min_value=70_000, max_value=1_000_000).flatmap(
    lambda n: st.sampled_from(
        [
            "x" * n,
            json.dumps({"type": "start", "agents": [{"agent_id": "alpha"}], "message": "y" * n}),
            json.dumps({"type": "cancel", "fanout_id": "z" * n}),
        ]
    )
)


#: Arrays or objects nested past any parser's depth, alone or as a field of a frame.
deep = st.integers(min_value=1_000, max_value=100_000).flatmap(
    lambda n: st.sampled_from(
        [
            "[" * n + "]" * n,
            '{"type": "start", "agents": ' + "[" * n + "]" * n + "}",
            '{"type": "cancel", "fanout_id": "f", "request_id": '
            + '{"a":' * n
            + "1"
            + "}" * n
            + "}",
        ]
    )
)


def _valid(text: Frame) -> bool:
    try:
        frame = orjson.loads(text)  # as strict as the server
    except ValueError:
        return False
    if not isinstance(frame, dict):
        return False
    for model in (StartFrame, CancelFrame):
        try:
            model.model_validate(frame)
        except ValidationError:
            continue
        return True
    return False


garbage: st.SearchStrategy[Frame] = st.one_of(
    json_values.map(json.dumps),
    shaped.map(json.dumps),
    st.text(max_size=50),
    huge,
    deep,
    st.binary(max_size=100),  # binary frames, mostly not UTF-8 and not JSON
    shaped.map(lambda f: json.dumps(f).encode()),  # a JSON object, but in a binary frame
    st.sampled_from([b"\xff\xfe{}", b'{"type": "start\xc3"}', b"\xed\xa0\x80"]),
).filter(lambda frame: not _valid(frame))


def _start(request_id: str) -> str:
    agents = [{"agent_id": agent_id} for agent_id in AGENTS]
    return json.dumps(
        {"type": "start", "request_id": request_id, "agents": agents, "message": "hi"}
    )


def _check_error(frame: dict[str, Any]) -> None:
    assert frame["type"] == "error", frame
    assert isinstance(frame["code"], str)
    assert frame["code"]
    assert isinstance(frame["message"], str)
    assert frame["message"].strip()


async def _run_fanout(ws: ClientConnection, bad: list[Frame]) -> tuple[list[dict[str, Any]], int]:
    """Start A's fan-out, send ``bad`` on the same socket, read until both are answered."""
    await ws.send(_start("main"))
    events: list[dict[str, Any]] = []
    errors = 0
    fanout_id: str | None = None
    done = False
    async with anyio.create_task_group() as tg:

        async def send_bad() -> None:
            for frame in bad:
                await ws.send(frame)

        tg.start_soon(send_bad)
        while not (done and errors == len(bad)):
            frame = orjson.loads(await ws.recv())
            if frame["type"] == "ack":
                assert frame["request_id"] == "main", frame
                fanout_id = frame["fanout_id"]
            elif frame["type"] == "error":
                _check_error(frame)
                errors += 1
            else:
                assert frame["fanout_id"] == fanout_id, frame
                events.append(frame)
                done = frame["type"] == "fanout_done"
    return events, errors


async def _send_garbage(ws: ClientConnection, bad: list[Frame]) -> None:
    """Client B: each bad frame is answered with one error frame, in order."""
    for frame in bad:
        await ws.send(frame)
        _check_error(orjson.loads(await ws.recv()))


def _check_complete(events: list[dict[str, Any]]) -> None:
    assert [e["index"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "fanout_start"
    assert events[-1]["type"] == "fanout_done"
    text = dict.fromkeys(AGENTS, "")
    for event in events:
        if event["type"] == "content":
            text[event["agent_id"]] += event["delta"]
    assert text == AGENTS
    ends = {
        e["agent_id"]: e["type"]
        for e in events
        if e["type"].startswith("agent_") and e["type"] != "agent_start"
    }
    assert ends == dict.fromkeys(AGENTS, "agent_done")


async def _still_serving(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.base_url) as client:
        assert (await client.get("/healthz")).status_code == 200
    async with connect(live.ws_url) as ws:
        events, _ = await _run_fanout(ws, [])
    _check_complete(events)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
)
@given(
    on_b=st.lists(garbage, min_size=1, max_size=12),
    on_a=st.lists(garbage, max_size=6),
)
async def test_garbage_frames_get_errors_and_lose_no_events(
    on_b: list[Frame], on_a: list[Frame]
) -> None:
    async with serve_live() as live:
        with anyio.fail_after(60):
            async with connect(live.ws_url, max_size=None) as a, connect(live.ws_url) as b:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_send_garbage, b, on_b)
                    events, errors = await _run_fanout(a, on_a)
                assert errors == len(on_a)
                _check_complete(events)
                # Both sockets are still open and still work.
                for ws in (a, b):
                    await ws.send(json.dumps({"type": "cancel", "fanout_id": "nope"}))
                    reply = orjson.loads(await ws.recv())
                    assert reply["code"] == "fanout_not_found", reply
            await _still_serving(live)


async def test_a_text_frame_that_is_not_utf8_closes_only_that_socket() -> None:
    """RFC 6455 requires failing that connection (1007); everyone else goes on."""
    async with serve_live() as live:
        with anyio.fail_after(60):
            async with connect(live.ws_url) as a, connect(live.ws_url) as b:
                async with anyio.create_task_group() as tg:

                    async def break_b() -> None:
                        await b.send(b"\xff\xfe not utf-8", text=True)
                        with pytest.raises(ConnectionClosedError) as closed:
                            await b.recv()
                        assert closed.value.rcvd is not None
                        assert closed.value.rcvd.code == 1007

                    tg.start_soon(break_b)
                    events, _ = await _run_fanout(a, [])
                _check_complete(events)
            await _still_serving(live)
