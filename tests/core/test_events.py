from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from orchestrator import Event, EventFormatError, ScriptedSource, event_schema, open_fanout


def _validator() -> jsonschema.Draft202012Validator:
    schema = event_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


async def _all_kinds_of_events() -> list[Event]:
    sources = [
        ScriptedSource(
            "a",
            ["Hel", "lo"],
            reasoning=["think", "ing"],
            tool_calls=[{"name": "search", "arguments": {"q": "x"}, "result": "found"}],
        ),
        ScriptedSource("b", ["x", "y"], fail_at=1),
        ScriptedSource("c", ["slow"], stall_at=0),
    ]
    events = []
    async with open_fanout(sources, "hi", first_token_timeout_s=0.2) as fanout:
        async for event in fanout:
            events.append(event)
    return events


async def test_every_event_matches_the_json_schema() -> None:
    validator = _validator()
    events = await _all_kinds_of_events()
    kinds = {e.type for e in events}
    assert kinds >= {
        "fanout_start",
        "agent_start",
        "reasoning",
        "content",
        "tool_call",
        "tool_result",
        "usage",
        "agent_done",
        "agent_error",
        "agent_cancelled",
        "fanout_done",
    }
    for event in events:
        validator.validate(json.loads(event.to_json()))


def test_schema_rejects_a_content_event_without_delta() -> None:
    bad = {
        "v": 1,
        "type": "content",
        "fanout_id": "f",
        "agent_id": "a",
        "label": "a",
        "seq": 1,
        "index": 1,
        "t": 0.1,
        "message_id": "m",
    }
    with pytest.raises(jsonschema.ValidationError, match="delta"):
        _validator().validate(bad)


async def test_json_round_trip_is_exact() -> None:
    for event in await _all_kinds_of_events():
        again = Event.from_json(event.to_json())
        assert again.to_dict() == event.to_dict()
        assert again.type == event.type
        assert again.index == event.index


def test_events_are_immutable() -> None:
    event = Event("content", "f", "a", "a", 1, 1, 0.0, {"delta": "x"})
    with pytest.raises(AttributeError):
        event.seq = 2  # type: ignore[misc]


async def test_event_payload_is_read_only() -> None:
    events = await _all_kinds_of_events()
    content = next(e for e in events if e.type == "content")
    *_, unpacked = content
    views: list[Any] = [content.data, content[7], content[-1], content[5:][-1], unpacked]
    views.append(content._asdict()["data"])
    for view in views:
        with pytest.raises(TypeError):
            view["delta"] = "changed"
    replaced = content._replace(seq=99)
    with pytest.raises(TypeError):
        replaced.data["delta"] = "changed"  # type: ignore[index]
    assert content.delta in {"Hel", "lo", "x"}
    assert dict(content.data) == {"delta": content.delta, "message_id": content.message_id}
    assert content[:5] == (
        content.type,
        content.fanout_id,
        content.agent_id,
        content.label,
        content.seq,
    )


def test_json_is_one_line_and_versioned() -> None:
    event = Event("content", "f", "a", "a", 1, 1, 0.5, {"delta": "a\nb", "message_id": "m"})
    text = event.to_json()
    assert "\n" not in text
    assert json.loads(text)["v"] == 1


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"v": 2, "type": "content"}', "version"),
        ('{"v": 1, "type": "nope"}', "type"),
        ('{"v": 1, "type": "content", "fanout_id": "f", "seq": "1", "index": 0, "t": 0}', "seq"),
        (
            '{"v": 1, "type": "content", "fanout_id": "f", "seq": 1, "index": 0, "t": 0, "agent_id": 3}',
            "agent_id",
        ),
    ],
)
def test_from_json_names_the_problem(payload: str, needle: str) -> None:
    with pytest.raises(EventFormatError, match=needle):
        Event.from_json(payload)


def test_accessors() -> None:
    data: dict[str, Any] = {"delta": "x", "message_id": "m"}
    event = Event("content", "f", "a", "a", 1, 1, 0.0, data)
    assert (event.delta, event.message_id, event.get("nope", 3), event.is_terminal) == (
        "x",
        "m",
        3,
        False,
    )
    assert Event("agent_done", "f", "a", "a", 2, 2, 0.0).is_terminal
