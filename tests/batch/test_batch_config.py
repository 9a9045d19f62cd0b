"""Batch YAML configs: the examples load; every error names file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestrator import ConfigError
from orchestrator.batch._config import MAX_PROMPTS_FILE_BYTES, load_batch
from orchestrator.batch._plan import MAX_PAIRS

ROOT = Path(__file__).resolve().parents[2]

AGENTS = """\
agents:
  - name: a-one
  - name: a-two
"""


def write(tmp_path: Path, text: str, name: str = "batch.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_batch(path)
    return str(info.value)


def test_example_configs_load() -> None:
    batch = load_batch(ROOT / "configs" / "batch.yaml")
    assert len(batch.plan.agents) == 3
    assert batch.plan.total_pairs == len(batch.plan.prompts) * 3
    templated = load_batch(ROOT / "configs" / "batch-templated.yaml")
    first = templated.plan.prompts[0]
    assert first.prompt_id == "rust"
    assert first.text == (
        "In three sentences, what should a backend team know about "
        "rewriting a Python service in Rust?"
    )
    assert templated.plan.repeats == 2


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        AGENTS
        + """\
prompts: [hello]
limits:
  fanouts: 2
  stream: 4
""",
    )
    message = error_of(path)
    assert message == f"{path}:7: limits.stream: unknown key (did you mean 'streams'?)"


def test_missing_agents(tmp_path: Path) -> None:
    path = write(tmp_path, "title: nobody\nprompts: [hello]\n")
    assert error_of(path) == f"{path}:1: agents: missing required key"


def test_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, AGENTS + "prompts: [hello]\nrepeats: many\n")
    message = error_of(path)
    assert message.startswith(f"{path}:5: repeats: ")
    assert "integer" in message


def test_too_few_streams_for_the_agents(tmp_path: Path) -> None:
    path = write(tmp_path, AGENTS + "prompts: [hi]\nlimits:\n  streams: 1\n")
    message = error_of(path)
    assert message.startswith(f"{path}:6: limits.streams: must be at least the number of agents")


def test_prompts_and_prompts_file_exclude_each_other(tmp_path: Path) -> None:
    path = write(tmp_path, AGENTS)
    assert "exactly one" in error_of(path)


def test_bad_prompts_file_line_names_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"id": "a", "topic": "x"}\n{"id": "b", "topic": \n')
    path = write(tmp_path, AGENTS + "template: 'About {topic}'\nprompts_file: p.jsonl\n")
    message = error_of(path)
    assert message.startswith(f"{tmp_path / 'p.jsonl'}:2: (line): not valid JSON")


def test_prompts_file_row_lacking_a_template_variable(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("id,topic\na,rust\nb,go\n")
    path = write(tmp_path, AGENTS + "template: '{topic} for {audience}'\nprompts_file: p.csv\n")
    assert error_of(path) == (
        f"{tmp_path / 'p.csv'}:2: audience: template variable 'audience' has no value"
    )


def test_missing_prompts_file(tmp_path: Path) -> None:
    path = write(tmp_path, AGENTS + "prompts_file: nowhere.jsonl\n")
    message = error_of(path)
    assert message.startswith(f"{path}:4: prompts_file: cannot read")


def test_inline_prompt_lacking_a_variable(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        AGENTS
        + """\
template: "Say {word}"
prompts:
  - vars: {word: hi}
  - vars: {other: x}
""",
    )
    assert error_of(path) == f"{path}:7: prompts[1].word: template variable 'word' has no value"


def test_malformed_template(tmp_path: Path) -> None:
    path = write(tmp_path, AGENTS + "template: 'Say {0}'\nprompts: [a]\n")
    assert error_of(path).startswith(f"{path}:4: template: invalid template")


def test_csv_prompts_and_variables(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("id,text,tone\nx,Hello there,warm\ny,Bye,\n")
    path = write(tmp_path, AGENTS + "prompts_file: p.csv\nvariables: {tone: dry}\n")
    plan = load_batch(path).plan
    assert [(p.prompt_id, p.text) for p in plan.prompts] == [("x", "Hello there"), ("y", "Bye")]
    assert plan.prompts[0].variables["tone"] == "warm"


def test_quorum_larger_than_the_panel(tmp_path: Path) -> None:
    path = write(tmp_path, AGENTS + "prompts: [a]\noptions:\n  policy: quorum:3\n")
    message = error_of(path)
    assert message.startswith(f"{path}:6: options.policy:")
    assert "needs 3 agents" in message


# Issue 12 (findings 2 and 4): prompts files are bounded, and their strings must be text.


def _prompts_error(tmp_path: Path, name: str, content: bytes, template: str = "") -> str:
    (tmp_path / name).write_bytes(content)
    return error_of(write(tmp_path, AGENTS + template + f"prompts_file: {name}\n"))


def test_an_oversized_prompts_file_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was parsed")

    monkeypatch.setattr("orchestrator.batch._config.json.loads", no_parsing)
    # One byte over the limit: a 50 MB file used to take minutes and a gigabyte.
    content = b'{"text": "hi"}\n' * (MAX_PROMPTS_FILE_BYTES // 15) + b"x" * 16
    assert len(content) > MAX_PROMPTS_FILE_BYTES
    message = _prompts_error(tmp_path, "big.jsonl", content)
    assert message == (
        f"{tmp_path / 'big.jsonl'}: prompts file is larger than the limit of "
        f"{MAX_PROMPTS_FILE_BYTES:,} bytes; refused before parsing"
    )


def test_too_many_prompts_are_refused_at_the_first_one_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("orchestrator.batch._config.MAX_PROMPTS", 3)
    content = b"".join(b'{"text": "p%d"}\n' % n for n in range(5))
    message = _prompts_error(tmp_path, "p.jsonl", content)
    assert message == f"{tmp_path / 'p.jsonl'}:4: (row): more than 3 prompts in one file"


def test_a_template_rendered_for_every_prompt_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("orchestrator.batch._config.MAX_PROMPT_TEXT", 100)
    content = b"".join(b'{"n": %d}\n' % n for n in range(5))
    message = _prompts_error(tmp_path, "p.jsonl", content, "template: '{n}" + "x" * 30 + "'\n")
    assert message.startswith(f"{tmp_path / 'p.jsonl'}:4: text: the prompts render to more than")


def test_a_duplicate_prompt_id_names_its_line(tmp_path: Path) -> None:
    inline = write(tmp_path, AGENTS + "prompts:\n  - {id: a, text: x}\n  - {id: a, text: y}\n")
    assert error_of(inline) == f"{inline}:6: prompts[1].id: duplicate id 'a'"
    # 20 000 ids: the check was quadratic (a 50 MB file took minutes).
    content = b"".join(b'{"id": "q%d", "text": "t"}\n' % n for n in range(20_000))
    (tmp_path / "p.jsonl").write_bytes(content + b'{"id": "q7", "text": "again"}\n')
    path = write(tmp_path, AGENTS + "prompts_file: p.jsonl\n")
    assert error_of(path) == f"{tmp_path / 'p.jsonl'}:20001: id: duplicate id 'q7'"


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        # JSON allows a lone surrogate escape; it is no text.
        ("p.jsonl", b'{"text": "ok"}\n{"id": "b", "text": "x\\ud800"}\n', "2: text: not valid"),
        ("p.jsonl", b'{"id": "a\\tb", "text": "x"}\n', "1: id: control character U+0009"),
        ("p.jsonl", b'{"text": "a\\u001b[2J"}\n', "1: text: control character U+001B"),
        ("p.jsonl", b'{"k\\u0000": "v", "text": "x"}\n', "1: (key): control character U+0000"),
        ("p.jsonl", b'{"text": "x", "n": NaN}\n', "1: (line): not valid JSON: NaN is not"),
        ("p.jsonl", b'{"text": ' + b"[" * 100_000 + b"\n", "1: (line): not valid JSON: nested"),
        ("p.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', "2: prompts file is not UTF-8"),
        ("p.csv", b"id,text\na,ok\nb,caf\xe9\n", "3: prompts file is not UTF-8 text"),
        ("p.csv", b"id,text\na," + b"x" * 200_000 + b"\n", "2: (row): not valid CSV: field larger"),
        ("p.csv", b'id,text\na,"x\x1by"\n', "2: text: control character U+001B"),
    ],
)
def test_prompts_file_strings_must_be_text(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    message = _prompts_error(tmp_path, name, content)
    assert message.startswith(f"{tmp_path / name}:{expected}")
    assert "\n" not in message


def test_tabs_and_line_breaks_in_prompt_text_are_kept(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"id": "a", "text": "one\\n\\ttwo \\ud83d\\ude00"}\n')
    plan = load_batch(write(tmp_path, AGENTS + "prompts_file: p.jsonl\n")).plan
    assert plan.prompts[0].text == "one\n\ttwo \U0001f600"


def test_a_plan_beyond_the_pair_limit_is_refused(tmp_path: Path) -> None:
    count = MAX_PAIRS // 2 // 1000 + 1  # prompts x 2 agents x 1000 repeats > MAX_PAIRS
    prompts = "".join(f"  - p{n}\n" for n in range(count))
    path = write(tmp_path, AGENTS + "repeats: 1000\nprompts:\n" + prompts)
    message = error_of(path)
    assert message == (
        f"{count} prompts x 2 agents x 1000 repeats make {count * 2000:,} pairs; "
        f"a run holds at most {MAX_PAIRS:,}"
    )
