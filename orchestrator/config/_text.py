"""Which strings a config file may hold: valid Unicode text, without stray control codes.

Every string read from a config or prompts file (keys included) must be valid Unicode text:
no lone surrogates (a YAML ``"\\ud800"`` escape, a JSON ``"\\ud800"``), which cannot be
encoded as UTF-8 and so break every JSON writer and HTTP response further on. Control
characters (Unicode category Cc) other than tab, line feed and carriage return are refused
too: nothing that reads a prompt or a persona needs them, PostgreSQL (behind Letta) refuses
NUL, and escape sequences reach terminals. Names (ids, agent names, labels, models, tools,
tags, prompt ids) refuse every control character, tab and line breaks included, since they
are shown on one line in terminals, pages and reports.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["Name", "check_name", "text_problem"]

_BAD_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_BAD_IN_NAME = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def text_problem(value: str, *, name: bool = False) -> tuple[int, str] | None:
    """``(index, problem)`` of the first character ``value`` may not hold, else ``None``.

    With ``name=True`` the stricter rule for names applies (no tab or line break either).
    """
    match = (_BAD_IN_NAME if name else _BAD_IN_TEXT).search(value)
    if match is None:
        return None
    char = match.group()
    code = f"U+{ord(char):04X}"
    where = f"at character {match.start() + 1}"
    if "\ud800" <= char <= "\udfff":
        return match.start(), f"not valid Unicode text: lone surrogate {code} {where}"
    kind = "a name" if name else "text"
    return match.start(), f"control character {code} {where} is not allowed in {kind}"


def check_name(value: str) -> str:
    """Return ``value``; raise ``ValueError`` when it holds a control character."""
    problem = text_problem(value, name=True)
    if problem is not None:
        raise ValueError(problem[1])
    return value


#: A string shown on one line (an id, a name, a label): no control characters at all.
Name = Annotated[str, AfterValidator(check_name)]
