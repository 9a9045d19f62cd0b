"""RunReader: a background run's frames read across reconnections, each exactly once.

Pure (no server): frames are built the way letta 0.16.8 stores them. Messages carry
``seq_id``; ``stop_reason`` and ``usage_statistics`` do not; keepalive pings repeat the last
``seq_id`` and are not stored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from orchestrator.letta import LettaMapper
from orchestrator.letta._resume import RunReader
from orchestrator.letta._sse import SSEFrames

RUN = "run-1"
TOKENS = ["The", " sea", " is", " calm", "."]


def stored() -> list[bytes]:
    """The run's stored frames, in order (``seq_id`` 1, 2, ...), then ``[DONE]``."""
    frames = [{"message_type": "ping", "run_id": RUN, "seq_id": 1}]
    for n, token in enumerate(TOKENS, start=2):
        frames.append(
            {
                "message_type": "assistant_message",
                "otid": "m1",
                "run_id": RUN,
                "seq_id": n,
                "content": token,
            }
        )
    tail: list[dict[str, object]] = [
        {"message_type": "stop_reason", "stop_reason": "end_turn"},
        {"message_type": "usage_statistics", "completion_tokens": 5, "total_tokens": 9},
    ]
    out = [b"data: " + json.dumps(f).encode() + b"\n\n" for f in [*frames, *tail]]
    return [*out, b"data: [DONE]\n\n"]


def after(starting_after: int | None) -> list[bytes]:
    """What ``runs.messages.stream(starting_after=...)`` serves: frames past that seq_id."""
    out = []
    for frame in stored():
        seq = json.loads(frame[6:]).get("seq_id") if frame.startswith(b"data: {") else None
        if starting_after is None or seq is None or seq > starting_after:
            out.append(frame)
    # Frames without a seq_id after the cut: the server replays all of them.
    return out


def read(reader: RunReader, body: Sequence[bytes]) -> list[tuple[str, object, int]]:
    parser = SSEFrames()
    out: list[tuple[str, object, int]] = []
    for chunk in body:
        for event, data in parser.feed(chunk):
            for sev in reader.frame(event, data):
                out.append((sev.type, sev.data.get("delta"), int(sev.data["cursor"])))
    return out


def whole() -> list[tuple[str, object, int]]:
    return read(RunReader(LettaMapper()), stored())


def test_every_event_is_numbered_from_one() -> None:
    events = whole()
    assert [c for _, _, c in events] == list(range(1, len(events) + 1))
    assert events[0][0] == "agent_start"
    assert "".join(str(d) for t, d, _ in events if t == "content") == "".join(TOKENS)


def test_a_cut_anywhere_then_a_resume_gives_each_event_once() -> None:
    frames = stored()
    reference = whole()
    for cut in range(1, len(frames)):
        for half in (False, True):
            reader = RunReader(LettaMapper())
            first = frames[:cut]
            if half:  # the body broke in the middle of the next frame
                first = [*first, frames[cut][: len(frames[cut]) // 2]]
            events = read(reader, first)
            assert not reader.done
            starting_after = reader.resume_after()
            events += read(reader, after(starting_after))
            assert reader.done
            assert events == reference, (cut, half)


def test_keepalive_pings_do_not_count() -> None:
    frames = stored()
    ping = b'data: {"message_type": "ping", "run_id": "run-1", "seq_id": 3}\n\n'
    reader = RunReader(LettaMapper())
    events = read(reader, [*frames[:3], ping, *frames[3:5], ping])
    starting_after = reader.resume_after()
    assert starting_after == 5
    events += read(reader, after(starting_after))
    assert events == whole()


def test_a_replay_from_the_start_skips_what_was_read() -> None:
    reader = RunReader(LettaMapper())
    events = read(reader, stored()[:4])
    reader.replay()  # the request was sent again with the same otid: the run from its start
    events += read(reader, stored())
    assert events == whole()


def test_skip_to_hands_out_only_what_follows_a_checkpoint() -> None:
    reference = whole()
    reader = RunReader(LettaMapper(), skip_to=3)
    assert read(reader, stored()) == reference[3:]
    reader = RunReader(LettaMapper(), drop_start=True)
    assert read(reader, stored()) == reference[1:]
