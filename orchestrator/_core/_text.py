"""What counts as text: valid Unicode without stray control characters.

One rule for every place input enters (REST bodies, WebSocket frames, config and prompts
files): no lone surrogates, which cannot be encoded as UTF-8 and so break every JSON writer
and HTTP response further on, and no control characters (Unicode category Cc) other than
tab, line feed and carriage return. Names (ids, agent names, labels, models) refuse every
control character, since they are shown on one line in terminals, pages and reports.
"""

from __future__ import annotations

import re

_BAD_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_BAD_IN_NAME = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def text_problem(value: str, *, name: bool = False) -> tuple[int, str] | None:
    """``(index, problem)`` of the first character ``value`` may not hold, else ``None``.

    With ``name=True`` the stricter rule for names applies (no tab or line break either).
    The problem is worded for users: ``not valid Unicode text: lone surrogate U+D800 at
    character 1``.
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
