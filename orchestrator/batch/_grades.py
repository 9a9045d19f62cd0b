"""Assertions on a batch's answers, in the style of promptfoo; each record gets ``grades``.

An :class:`Assertion` is one check of one answer::

    {type: contains, value: "Paris"}             # the answer holds the text
    {type: not_contains, value: "As an AI"}      # it does not
    {type: regex, value: "\\b\\d{4}\\b"}         # re.search finds the pattern
    {type: json_schema, value: {type: object}}   # the answer is JSON valid for the schema
    {type: max_chars, value: 400}                # at most this many characters
    {type: max_ttft_s, value: 2.0}               # first token within this many seconds

``contains`` and ``not_contains`` take ``ignore_case: true``; every assertion may have a
``name``. A record's ``grades`` is ``[{"name", "pass", "detail"}]``, one per assertion, in
order. Assertions are checked when the config loads (a bad regex or schema is a config
error naming its line) and run on each record as it is written.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from .._core._types import JSON

__all__ = ["ASSERTION_TYPES", "Assertion", "AssertionType", "grade_record"]

AssertionType: TypeAlias = Literal[
    "contains", "not_contains", "regex", "json_schema", "max_chars", "max_ttft_s"
]
ASSERTION_TYPES: tuple[str, ...] = AssertionType.__args__  # type: ignore[attr-defined]

_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n?```\s*$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Assertion:
    """One check of an answer; :meth:`check` (run when built from a config) raises
    ``ValueError`` for a value the type cannot use."""

    type: AssertionType
    value: Any
    name: str | None = None
    ignore_case: bool = False

    @property
    def title(self) -> str:
        """The grade's name: ``name``, else ``type: value`` (shortened)."""
        if self.name:
            return self.name
        shown = json.dumps(self.value, ensure_ascii=False, sort_keys=True)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"{self.type}: {shown}"

    def check(self) -> Assertion:
        kind, value = self.type, self.value
        if kind not in ASSERTION_TYPES:
            raise ValueError(
                f"unknown assertion type {kind!r} (one of {', '.join(ASSERTION_TYPES)})"
            )
        if kind in ("contains", "not_contains", "regex"):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{kind}: value must be a non-empty string")
            if kind == "regex":
                try:
                    re.compile(value)
                except re.error as exc:
                    raise ValueError(f"regex: invalid pattern: {exc}") from None
        elif kind == "json_schema":
            if not isinstance(value, Mapping):
                raise ValueError("json_schema: value must be a JSON Schema (a mapping)")
            from jsonschema import SchemaError, validators

            try:
                validators.validator_for(value).check_schema(dict(value))
            except SchemaError as exc:
                raise ValueError(f"json_schema: invalid schema: {exc.message}") from None
        elif kind == "max_chars":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError("max_chars: value must be an integer >= 0")
        elif (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError("max_ttft_s: value must be a number >= 0")
        return self

    def run(self, record: Mapping[str, Any]) -> tuple[bool, str]:
        """``(passed, detail)`` for one record."""
        text = str(record.get("text") or "")
        kind, value = self.type, self.value
        if kind in ("contains", "not_contains"):
            haystack, needle = (
                (text.casefold(), value.casefold()) if self.ignore_case else (text, value)
            )
            found = needle in haystack
            if kind == "contains":
                return found, "found" if found else f"{value!r} not in the answer"
            return not found, f"{value!r} is in the answer" if found else "not found"
        if kind == "regex":
            match = re.search(value, text)
            return (True, f"matched {match.group(0)[:80]!r}") if match else (False, "no match")
        if kind == "max_chars":
            ok = len(text) <= value
            return ok, f"{len(text)} characters" + ("" if ok else f", more than {value}")
        if kind == "max_ttft_s":
            metrics = record.get("metrics") or {}
            ttft = metrics.get("ttft_s") if isinstance(metrics, Mapping) else None
            if not isinstance(ttft, int | float):
                return False, "no first token"
            ok = ttft <= value
            return ok, f"first token after {ttft:.3f} s" + ("" if ok else f", over {value} s")
        return _json_schema(text, value)


def _json_schema(text: str, schema: Mapping[str, Any]) -> tuple[bool, str]:
    from jsonschema import validators

    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text
    try:
        data = json.loads(body)
    except ValueError as exc:
        return False, f"not JSON: {exc}"
    error = next(iter(validators.validator_for(schema)(schema).iter_errors(data)), None)
    if error is None:
        return True, "valid"
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return False, f"{where}: {error.message}"


def grade_record(record: Mapping[str, Any], assertions: Sequence[Assertion]) -> list[JSON]:
    """The ``grades`` of one record: ``[{"name", "pass", "detail"}]``, one per assertion."""
    grades: list[JSON] = []
    for assertion in assertions:
        passed, detail = assertion.run(record)
        grades.append({"name": assertion.title, "pass": passed, "detail": detail})
    return grades
