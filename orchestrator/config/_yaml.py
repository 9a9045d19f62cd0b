"""Reading YAML safely: bounded in size, depth and alias expansion, with line numbers.

A config file is untrusted input (a preset folder, a file someone sent). Before anything is
built from it, the file is refused when it is larger than :data:`MAX_CONFIG_BYTES`, when its
collections nest deeper than :data:`MAX_DEPTH`, or when its aliases would expand it to more
than :data:`MAX_NODES` nodes (a "billion laughs" file is a few hundred bytes that expand to
10**9 nodes). The limits are checked on the parser's event stream, which takes memory
proportional to the depth only, so a hostile file costs no more than reading it. Every
string is then checked (:mod:`._text`), and every error is a
:class:`~orchestrator.ConfigError` that names the file, the line and, where there is one,
the key.

libyaml's parser (``yaml.CSafeLoader``) is used when PyYAML was built with it, else PyYAML's
pure-Python ``SafeLoader``; both only build plain data (no Python objects).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from .._core._exceptions import ConfigError
from ._text import text_problem

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "LineMap",
    "format_loc",
    "load_yaml",
    "parse_yaml",
    "read_limited",
]

#: Largest config file read, in bytes. Configs are a few kB; 1 MiB still holds thousands of
#: inline prompts (larger prompt sets belong in a ``prompts_file``).
MAX_CONFIG_BYTES = 1 << 20
#: Deepest nesting of lists and mappings. A batch config nests six levels.
MAX_DEPTH = 64
#: Most nodes (scalars, lists, mappings) a document may have once its aliases are expanded:
#: about what a file of ``MAX_CONFIG_BYTES`` holds without any alias, so aliases may share
#: a block a few times but never multiply a document.
MAX_NODES = 250_000

Loc = tuple[str | int, ...]


class LineMap:
    """Where each key and list item of a YAML document starts (1-based lines).

    ``line(loc)`` gives the line of the deepest part of ``loc`` that exists in the file, so
    a missing key points at the mapping that lacks it.
    """

    def __init__(self, lines: Mapping[Loc, int] | None = None) -> None:
        self._lines: dict[Loc, int] = dict(lines or {})

    def line(self, loc: Sequence[str | int]) -> int:
        """The line of ``loc``, or of its nearest ancestor found in the file."""
        path = tuple(loc)
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return self._lines.get((), 1)


def format_loc(loc: Sequence[str | int]) -> str:
    """``("agents", 1, "model")`` -> ``"agents[1].model"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


class _Constructing(SafeConstructor):
    # PyYAML's constructors let ValueError out for values its resolver matched but Python
    # cannot build (month 13 of a timestamp, an int of 5000 digits): give them the node's line.
    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ConstructorError(None, None, f"invalid value: {exc}", node.start_mark) from None


class _PyLoader(_Constructing, yaml.SafeLoader):
    pass


if yaml.__with_libyaml__:

    class _CLoader(_Constructing, yaml.CSafeLoader):
        pass

    _Loader: type[Any] = _CLoader
else:  # pragma: no cover - PyYAML built without libyaml
    _Loader = _PyLoader


def read_limited(path: str | Path, max_bytes: int, what: str) -> str:
    """The UTF-8 text of ``path``, refused by size before it is read in full.

    Raises :class:`ConfigError` naming the file when it is larger than ``max_bytes`` or not
    UTF-8 (with the line of the first bad byte); lets ``OSError`` through.
    """
    source = str(path)
    with open(path, "rb") as file:
        raw = file.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ConfigError(
            f"{source}: {what} is larger than the limit of {max_bytes:,} bytes; "
            "refused before parsing"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{source}:{line}: {what} is not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None


def load_yaml(path: str | Path, *, max_bytes: int = MAX_CONFIG_BYTES) -> tuple[Any, LineMap]:
    """Read a YAML file; return its data and a :class:`LineMap` of it.

    Raises :class:`ConfigError` (with file and line) when the file is missing, larger than
    ``max_bytes``, not UTF-8, not YAML, nested or expanded beyond the limits, or holds a
    string that is not valid text.
    """
    try:
        text = read_limited(path, max_bytes, "config file")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    return parse_yaml(text, str(path))


def parse_yaml(
    text: str,
    source: str = "<string>",
    *,
    max_chars: int = MAX_CONFIG_BYTES,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
) -> tuple[Any, LineMap]:
    """Parse YAML text; like :func:`load_yaml` for text that is not in a file."""
    if len(text) > max_chars:
        raise ConfigError(f"{source}: config text is longer than the limit of {max_chars:,}")
    problem = text_problem(text)
    if problem is not None and "\ud800" <= text[problem[0]] <= "\udfff":
        # libyaml needs text it can encode; control characters are the reader's to report.
        line = text.count("\n", 0, problem[0]) + 1
        raise ConfigError(f"{source}:{line}: invalid YAML: {problem[1]}")
    _check_shape(text, source, max_depth, max_nodes)
    try:
        # The reader checks the characters already here (NUL, control characters).
        loader = _Loader(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, LineMap()
        lines: dict[Loc, int] = {}
        _walk(node, (), lines, source)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise _marked(exc, source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return data, LineMap(lines)


def _marked(exc: yaml.MarkedYAMLError, source: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    where = f"{source}:{mark.line + 1}" if mark is not None else source
    return ConfigError(f"{where}: invalid YAML: {exc.problem or exc}")


_OPEN = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSE = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
_NODE = (*_OPEN, yaml.ScalarEvent, yaml.AliasEvent)


class _Open:
    """A list or mapping being read: where its nodes start, and where its next child goes."""

    __slots__ = ("anchor", "first", "key", "mapping", "on_key")

    def __init__(self, anchor: str | None, first: int, mapping: bool) -> None:
        self.anchor = anchor
        self.first = first
        self.mapping = mapping
        self.on_key = mapping  # a mapping's next node is a key
        self.key: str | int = -1 if not mapping else "?"

    @property
    def reading_value(self) -> bool:
        """Whether a mapping's key was read and its value was not."""
        return self.mapping and not self.on_key

    def advance(self, event: yaml.Event) -> None:
        """Note that ``event`` (a node) was read as this collection's next child."""
        if not self.mapping:
            self.key = int(self.key) + 1
        elif self.on_key:
            self.key = event.value if isinstance(event, yaml.ScalarEvent) else "?"
            self.on_key = False
        else:
            self.on_key = True


def _check_shape(text: str, source: str, max_depth: int, max_nodes: int) -> None:
    """Read the event stream once: refuse syntax errors, deep nesting and alias expansion.

    Nothing is built, so memory stays proportional to the depth. ``nodes`` counts what the
    document holds with every alias expanded (an alias counts the nodes of its anchor),
    which is what walking or validating the data would visit.
    """
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:
        raise _unmarked(exc, text, source) from None
    stack: list[_Open] = []
    sizes: dict[str, int] = {}
    nodes = 0
    line = 1  # of the last event read

    def fail(problem: str) -> NoReturn:
        raise ConfigError(f"{source}:{line}: {_shown(_keys(stack))}: {problem}")

    try:
        while loader.check_event():
            event = loader.get_event()
            if event.start_mark is not None:
                line = event.start_mark.line + 1
            if isinstance(event, _CLOSE):
                done = stack.pop()
                if done.anchor is not None:
                    sizes[done.anchor] = nodes - done.first
                continue
            if not isinstance(event, _NODE):
                continue  # stream and document events
            if stack:
                stack[-1].advance(event)
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in sizes:
                    if any(o.anchor == event.anchor for o in stack):
                        fail(f"alias *{event.anchor} refers to a node that holds it")
                    continue  # undefined: the composer reports it
                nodes += sizes[event.anchor]
                if nodes > max_nodes:
                    fail(
                        f"alias *{event.anchor} expands the document beyond {max_nodes:,} "
                        "values; anchors and aliases may share a value, not multiply one",
                    )
                continue
            nodes += 1
            if nodes > max_nodes:
                fail(f"more than {max_nodes:,} values in one document")
            if isinstance(event, yaml.ScalarEvent):
                if event.anchor is not None:
                    sizes[event.anchor] = 1
                continue
            if len(stack) >= max_depth:
                fail(f"lists and mappings nest deeper than {max_depth} levels")
            mapping = isinstance(event, yaml.MappingStartEvent)
            stack.append(_Open(event.anchor, nodes - 1, mapping))
    except yaml.MarkedYAMLError as exc:
        error = _marked(exc, source)
        mark = exc.problem_mark or exc.context_mark
        if mark is not None and mark.line + 1 == line and stack and stack[-1].reading_value:
            # The value of the key just read is broken (a bad escape): name that key.
            loc = _shown(_keys(stack))
            error = ConfigError(str(error).replace(": invalid YAML:", f": {loc}: invalid YAML:", 1))
        raise error from None
    except yaml.YAMLError as exc:
        raise _unmarked(exc, text, source) from None
    except ConfigError:
        raise
    except (ValueError, OverflowError) as exc:
        # The pure-Python scanner lets some out (an escape beyond U+10FFFF).
        raise ConfigError(f"{source}:{line}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def _unmarked(exc: yaml.YAMLError, text: str, source: str) -> ConfigError:
    # A reader error (a control character in the file) knows its offset, not its line.
    problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    position = getattr(exc, "position", None)
    if isinstance(position, int):
        line = text.count("\n", 0, position) + 1
        return ConfigError(f"{source}:{line}: invalid YAML: {problem}")
    return ConfigError(f"{source}: invalid YAML: {problem}")


def _keys(stack: list[_Open]) -> Loc:
    return tuple(o.key for o in stack)


def _shown(loc: Loc) -> str:
    # A key that fails the text check is not printed (it may hold escape sequences), and a
    # path dozens of levels deep is cut short.
    parts = tuple("?" if isinstance(k, str) and text_problem(k) else k for k in loc)
    if len(parts) > 8:
        return f"{format_loc(parts[:6])}... ({len(parts)} levels)"
    return format_loc(parts)


def _walk(node: yaml.Node, loc: Loc, out: dict[Loc, int], source: str) -> None:
    out.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None or key == "<<":
                # Complex keys and merges: checked for text, but their lines are not keys'.
                _walk(key_node, loc, {}, source)
                _walk(value_node, loc, {}, source)
                continue
            _check_text(key_node, loc, source, "key: ")
            if key in seen:
                # YAML silently keeps the last one; a repeated key is nearly always a mistake.
                raise ConfigError(
                    f"{source}:{key_node.start_mark.line + 1}: {format_loc((*loc, key))}: "
                    "duplicate key"
                )
            seen.add(key)
            out[(*loc, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*loc, key), out, source)
    elif isinstance(node, yaml.SequenceNode):
        for n, item in enumerate(node.value):
            _walk(item, (*loc, n), out, source)
    elif isinstance(node, yaml.ScalarNode):
        _check_text(node, loc, source, "")


def _check_text(node: yaml.ScalarNode, loc: Loc, source: str, what: str) -> None:
    problem = text_problem(node.value)
    if problem is not None:
        line = node.start_mark.line + 1
        raise ConfigError(f"{source}:{line}: {format_loc(loc)}: {what}{problem[1]}")
