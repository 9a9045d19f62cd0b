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

from typing import Annotated

from pydantic import AfterValidator

from .._core._text import text_problem

__all__ = ["Name", "check_name", "text_problem"]


def check_name(value: str) -> str:
    """Return ``value``; raise ``ValueError`` when it holds a control character."""
    problem = text_problem(value, name=True)
    if problem is not None:
        raise ValueError(problem[1])
    return value


#: A string shown on one line (an id, a name, a label): no control characters at all.
Name = Annotated[str, AfterValidator(check_name)]
