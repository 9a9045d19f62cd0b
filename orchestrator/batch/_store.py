"""The files of a batch run: results, per-fan-out event logs and the manifest.

Layout of a results directory::

    manifest.json            the plan (prompts, agents, options), rewritten atomically
    results.jsonl            one record per prompt x agent x repeat, as they complete
    events/<fanout_id>.jsonl the full event log of each fan-out (when asked for)

Every record is appended as one whole line with a single ``write`` and a flush, so an
interrupted run (Ctrl-C) never leaves half a line. Only a hard crash (``kill -9``, power
loss) can tear the last line; :meth:`ResultStore.open` then truncates it, with a warning,
before appending again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .._core._exceptions import ConfigError
from .._core._types import JSON

logger = logging.getLogger("orchestrator.batch")

RESULTS_FILE = "results.jsonl"
MANIFEST_FILE = "manifest.json"
EVENTS_DIR = "events"


def _dumps(record: JSON) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)


class JsonlWriter:
    """Appends JSON records to a file, one whole line per ``write`` + flush.

    Use as a context manager; :meth:`close` is idempotent.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = path.open("a", encoding="utf-8", newline="\n")

    def write(self, record: JSON) -> None:
        """Append ``record`` as one line and flush it to the OS."""
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        self._file.write(_dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file (safe twice)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def repair_torn_tail(path: Path) -> int:
    """Cut a torn last line (no final newline, or not valid JSON) off ``path``.

    Returns the number of bytes removed and logs a warning when it removes any.
    """
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data:
        return 0
    keep = len(data)
    if not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
    else:
        last_start = data.rfind(b"\n", 0, len(data) - 1) + 1
        try:
            json.loads(data[last_start:])
        except ValueError:
            keep = last_start
    removed = len(data) - keep
    if removed:
        with path.open("r+b") as f:
            f.truncate(keep)
        logger.warning(
            "%s: removed a torn last line (%d bytes) left by an interrupted run", path, removed
        )
    return removed


def read_jsonl(path: Path) -> Iterator[JSON]:
    """Records of a JSONL file; a torn or invalid line is skipped with a warning."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                logger.warning("%s:%d: skipped a line that is not valid JSON", path, n)
                continue
            if isinstance(record, dict):
                yield record


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as pretty JSON via a temporary file and a rename (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", "utf-8")
    os.replace(tmp, path)


class ResultStore:
    """The results directory of one batch run.

    ``done`` maps the key of every pair already recorded to its latest record. Open it with
    :meth:`open`; close it (or use it as a context manager) when the run ends.
    """

    def __init__(self, root: Path, *, save_events: bool = False) -> None:
        self.root = root
        self.save_events = save_events
        self.done: dict[str, JSON] = {}
        self._results: JsonlWriter | None = None

    @classmethod
    def open(cls, root: Path | str, *, resume: bool, save_events: bool = False) -> ResultStore:
        """Open ``root`` for writing: with ``resume`` load what is done, else start afresh.

        Without ``resume`` an existing ``results.jsonl`` is an error
        (:class:`ConfigError`), so a run never mixes into or overwrites older results.
        """
        store = cls(Path(root), save_events=save_events)
        results = store.results_path
        if results.exists() and results.stat().st_size > 0 and not resume:
            raise ConfigError(
                f"{results} already has results; resume the run (--resume) "
                "or choose another output directory"
            )
        store.root.mkdir(parents=True, exist_ok=True)
        if resume:
            repair_torn_tail(results)
            for record in read_jsonl(results):
                key = record.get("key")
                if isinstance(key, str):
                    store.done[key] = record
        store._results = JsonlWriter(results)
        return store

    @property
    def results_path(self) -> Path:
        """``<root>/results.jsonl``."""
        return self.root / RESULTS_FILE

    def write_manifest(self, manifest: JSON) -> None:
        """Store the run's plan, for ``report`` and for humans."""
        write_json_atomic(self.root / MANIFEST_FILE, manifest)

    def record(self, record: JSON) -> None:
        """Append one pair's record and remember it as done."""
        if self._results is None:
            raise ValueError("the result store is closed")
        self._results.write(record)
        self.done[str(record["key"])] = record

    def event_log(self, fanout_id: str) -> JsonlWriter | None:
        """A writer for one fan-out's events, or ``None`` when events are not kept."""
        if not self.save_events:
            return None
        return JsonlWriter(self.root / EVENTS_DIR / f"{fanout_id}.jsonl")

    def close(self) -> None:
        """Close the results file (safe twice)."""
        if self._results is not None:
            self._results.close()
            self._results = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
