"""Assertions pass and fail as written; a batch config's assertions grade every record."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from orchestrator import ConfigError, ScriptedDirectory, load_batch, run_batch
from orchestrator.batch import read_jsonl
from orchestrator.batch._grades import Assertion, grade_record
from orchestrator.testing import ScriptedSource

RECORD = {"text": 'Paris is the capital. {"city": "Paris"}', "metrics": {"ttft_s": 0.5}}
JSON_RECORD = {"text": '```json\n{"city": "Paris", "people": 2100000}\n```', "metrics": {}}
SCHEMA = {
    "type": "object",
    "required": ["city", "people"],
    "properties": {"people": {"type": "integer"}},
}


@pytest.mark.parametrize(
    ("assertion", "record", "passed", "detail"),
    [
        (Assertion("contains", "Paris"), RECORD, True, "found"),
        (Assertion("contains", "paris"), RECORD, False, "'paris' not in the answer"),
        (Assertion("contains", "paris", ignore_case=True), RECORD, True, "found"),
        (Assertion("not_contains", "London"), RECORD, True, "not found"),
        (Assertion("not_contains", "capital"), RECORD, False, "'capital' is in the answer"),
        (Assertion("regex", r"\bcap\w+"), RECORD, True, "matched 'capital'"),
        (Assertion("regex", r"^\d+$"), RECORD, False, "no match"),
        (Assertion("max_chars", 100), RECORD, True, "39 characters"),
        (Assertion("max_chars", 10), RECORD, False, "39 characters, more than 10"),
        (Assertion("max_ttft_s", 1.0), RECORD, True, "first token after 0.500 s"),
        (Assertion("max_ttft_s", 0.1), RECORD, False, "first token after 0.500 s, over 0.1 s"),
        (Assertion("max_ttft_s", 1.0), JSON_RECORD, False, "no first token"),
        (Assertion("json_schema", SCHEMA), JSON_RECORD, True, "valid"),
        (Assertion("json_schema", SCHEMA), RECORD, False, "not JSON"),
        (
            Assertion("json_schema", {**SCHEMA, "properties": {"people": {"type": "string"}}}),
            JSON_RECORD,
            False,
            "people: 2100000 is not of type 'string'",
        ),
    ],
)
def test_assertions_pass_and_fail_as_written(
    assertion: Assertion, record: dict[str, Any], passed: bool, detail: str
) -> None:
    (grade,) = grade_record(record, [assertion.check()])
    assert grade["pass"] is passed
    assert str(grade["detail"]).startswith(detail), grade["detail"]
    assert grade["name"] == assertion.title


@pytest.mark.parametrize(
    ("assertion", "message"),
    [
        (Assertion("regex", "(unclosed"), "regex: invalid pattern"),
        (Assertion("contains", ""), "contains: value must be a non-empty string"),
        (Assertion("max_chars", -1), "max_chars: value must be an integer >= 0"),
        (Assertion("max_ttft_s", "soon"), "max_ttft_s: value must be a number >= 0"),
        (Assertion("json_schema", {"type": "nope"}), "json_schema: invalid schema"),
    ],
)
def test_bad_assertions_are_refused(assertion: Assertion, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        assertion.check()


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "batch.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_a_bad_regex_in_a_config_names_its_line(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        """\
        agents: [{id: alpha}]
        prompts: ["hi"]
        assertions:
          - {type: contains, value: hi}
          - {type: regex, value: "(oops"}
        """,
    )
    with pytest.raises(ConfigError, match=r"batch.yaml:5: assertions\[1\]: regex: invalid pattern"):
        load_batch(path)


async def test_each_record_gets_its_grades(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        """\
        agents: [{id: alpha}, {id: beta}]
        prompts:
          - "Name a capital."
          - id: short
            text: "Say it briefly."
            assertions: [{type: max_chars, value: 12, name: brief}]
        assertions:
          - {type: contains, value: Paris}
          - {type: not_contains, value: sorry, ignore_case: true}
        """,
    )
    answers = {"alpha": ["Paris", " is it."], "beta": ["Sorry, ", "no idea."]}
    directory = ScriptedDirectory(
        {
            a: (lambda agent, label: ScriptedSource(agent, answers[agent], label=label))
            for a in answers
        }
    )
    batch = load_batch(path)
    summary = await run_batch(directory, batch.plan, tmp_path / "out")
    assert summary.ok
    grades = {
        (r["prompt_id"], r["agent"]): [(g["name"], g["pass"]) for g in r["grades"]]
        for r in read_jsonl(tmp_path / "out" / "results.jsonl")
    }
    contains, not_sorry = 'contains: "Paris"', 'not_contains: "sorry"'
    assert grades == {
        ("p1", "alpha"): [(contains, True), (not_sorry, True)],
        ("p1", "beta"): [(contains, False), (not_sorry, False)],
        ("short", "alpha"): [(contains, True), (not_sorry, True), ("brief", True)],
        ("short", "beta"): [(contains, False), (not_sorry, False), ("brief", False)],
    }


def test_the_example_config_loads() -> None:
    loaded = load_batch(Path(__file__).parents[2] / "configs" / "batch-judged.yaml")
    assert loaded.config.judge is not None
    assert loaded.config.judge.voter == "judge:strict"
    first = loaded.plan.prompts[0]
    assert [a.title for a in first.assertions] == [
        'not_contains: "as an AI"',
        "concise",
        "max_ttft_s: 30",
        "stays on topic",
    ]
