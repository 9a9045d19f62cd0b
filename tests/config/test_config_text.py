"""Issue 12, finding 2 for files: strings that are not valid text are refused with file:line.

Lone surrogates (a YAML ``"\\ud800"`` escape) and control characters where they make no
sense; the key is named. Runs with libyaml's parser and with the pure-Python one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import ConfigError, load_panel
from orchestrator.config._text import text_problem


def error_of(tmp_path: Path, text: str) -> tuple[Path, str]:
    path = tmp_path / "panel.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_panel(path)
    return path, str(info.value)


@pytest.mark.parametrize("escape", ["\\ud800", "\\uDFFF", "\\U0000D800", "\\ud83d\\ude00"])
def test_a_lone_surrogate_escape_names_file_line_and_key(
    tmp_path: Path, parser: str, escape: str
) -> None:
    path, message = error_of(tmp_path, f'agents:\n  - name: x\n    label: "ok {escape}"\n')
    assert message.startswith(f"{path}:3: agents[0].label: ")
    # libyaml refuses the escape itself; the pure-Python parser builds the string first.
    assert "lone surrogate" in message or "invalid Unicode character escape" in message


def test_a_lone_surrogate_in_a_key_is_refused(tmp_path: Path, parser: str) -> None:
    path, message = error_of(tmp_path, 'agents:\n  - name: x\n    "k\\ud800": 1\n')
    assert message.startswith(f"{path}:3: ")
    assert "lone surrogate" in message or "invalid Unicode character escape" in message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('    label: "a\\eb"', "agents[0].label: control character U+001B at character 2"),
        ('    label: "a\\tb"', "agents[0].label: control character U+0009 at character 2"),
        ('  - name: "x\\ny"', "agents[1].name: control character U+000A at character 2"),
        ('  - {name: y, model: "m\\x85"}', "agents[1].model: control character U+0085"),
        ('    persona: "a\\0b"', "agents[0].persona: control character U+0000 at character 2"),
        ('    tags: [ok, "t\\x7f"]', "agents[0].tags[1]: control character U+007F"),
        ('    "k\\x01": 1', "agents[0]: key: control character U+0001 at character 2"),
    ],
)
def test_control_characters_are_refused_where_they_make_no_sense(
    tmp_path: Path, parser: str, line: str, expected: str
) -> None:
    path, message = error_of(tmp_path, f"agents:\n  - name: x2\n    model: m\n{line}\n")
    assert message.startswith(f"{path}:4: {expected}")


def test_text_keeps_tabs_and_line_breaks_and_any_valid_character(
    tmp_path: Path, parser: str
) -> None:
    path = tmp_path / "panel.yaml"
    path.write_text(
        'agents:\n  - name: "caf\\u00e9 \\U0001F600"\n    model: m\n'
        '    persona: "line one\\n\\tline two\\r\\n\\u202e"\n',
        encoding="utf-8",
    )
    agent = load_panel(path).agents[0]
    assert agent.name == "café 😀"
    assert agent.persona == "line one\n\tline two\r\n\u202e"


def test_non_finite_numbers_are_refused(tmp_path: Path, parser: str) -> None:
    path, message = error_of(tmp_path, "agents: [{name: x}]\noptions:\n  timeout_s: .inf\n")
    assert message == f"{path}:3: options.timeout_s: Input should be a finite number"


def test_a_config_that_is_not_utf8_names_the_line_of_the_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"agents:\n  - name: x\ntitle: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_panel(path)
    assert str(info.value).startswith(f"{path}:3: config file is not UTF-8 text (byte 30")


@pytest.mark.parametrize(
    ("value", "name", "problem"),
    [
        ("plain text", False, None),
        ("tab\tand\nline", False, None),
        ("tab\there", True, "control character U+0009 at character 4 is not allowed in a name"),
        ("a\x1b[2J", False, "control character U+001B at character 2 is not allowed in text"),
        ("x\ud800", False, "not valid Unicode text: lone surrogate U+D800 at character 2"),
        ("\U0001f600\u202e", True, None),
    ],
)
def test_text_problem(value: str, name: bool, problem: str | None) -> None:
    found = text_problem(value, name=name)
    assert (found[1] if found else None) == problem
