"""Panel presets for ``GET /v1/presets``: the panel YAML files of a folder, parsed once.

Parsing YAML is slow and blocking, so a :class:`PresetCache` parses in a worker thread and
only the files that changed since the last request (by modification time and size). A file
over ``max_bytes`` is never read: it shows up in ``errors`` instead, so no file in the
folder can hold the event loop (and with it every stream and ``/healthz``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
from pydantic import ValidationError

from orchestrator import ConfigError, PanelConfig, load_panel

from ._errors import describe_validation
from ._models import OptionsSpec, Preset, PresetError, PresetList

__all__ = ["MAX_PRESET_BYTES", "PresetCache"]

logger = logging.getLogger(__name__)

#: Largest preset file read: the config loader's own limit (``docs/config-limits.md``),
#: checked here before the file is opened so that a larger one costs nothing at all.
MAX_PRESET_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Parsed:
    """What one version of one file gave: a preset, an error, or neither (not a panel)."""

    version: tuple[int, int]
    preset: Preset | None = None
    error: PresetError | None = None


class PresetCache:
    """The presets of ``folder``, re-read per file only when the file changed.

    A relative ``folder`` is resolved against the working directory at each read, so
    presets added while the server runs show up. Safe to call from several threads.
    """

    def __init__(self, folder: str | Path, *, max_bytes: int = MAX_PRESET_BYTES) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._files: dict[Path, _Parsed] = {}

    async def aread(self) -> PresetList:
        """:meth:`read` in a worker thread, so the event loop never parses YAML."""
        return await anyio.to_thread.run_sync(self.read)

    def read(self) -> PresetList:
        """Every preset of the folder, in file name order, and the files that failed."""
        with self._lock:
            folder = self.folder.absolute()
            if not folder.is_dir():
                self._files.clear()
                return PresetList(presets=[])
            paths = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
            files = {path: self._parse(path) for path in paths}
            self._files = files  # files that are gone leave the cache
            return PresetList(
                presets=[p.preset for p in files.values() if p.preset is not None],
                errors=[p.error for p in files.values() if p.error is not None],
            )

    def _parse(self, path: Path) -> _Parsed:
        try:
            stat = path.stat()
        except OSError as exc:
            return _Parsed((0, 0), error=PresetError(file=path.name, message=_os_error(exc)))
        version = (stat.st_mtime_ns, stat.st_size)
        cached = self._files.get(path)
        if cached is not None and cached.version == version:
            return cached
        if stat.st_size > self.max_bytes:
            message = (
                f"preset file is {stat.st_size} bytes, the maximum is {self.max_bytes}; "
                "it was not read"
            )
            return _Parsed(version, error=PresetError(file=path.name, message=message))
        try:
            panel = load_panel(path)
        except ConfigError as exc:
            # Batch configs live in the same folder: not an error, just not a panel.
            logger.info("not a panel preset: %s", str(exc).splitlines()[0])
            return _Parsed(version)
        except OSError as exc:
            return _Parsed(version, error=PresetError(file=path.name, message=_os_error(exc)))
        try:
            return _Parsed(version, preset=Preset.model_validate(_preset(path, panel)))
        except ValidationError as exc:
            summary, _ = describe_validation(exc.errors())
            message = f"a fan-out would refuse this panel: {summary}"
            return _Parsed(version, error=PresetError(file=path.name, message=message))


def _os_error(exc: OSError) -> str:
    return f"cannot read the file: {exc.strerror or exc}"


def _preset(path: Path, panel: PanelConfig) -> dict[str, Any]:
    agents = []
    for ref in panel.refs():
        entry: dict[str, Any] = {"label": ref.label}
        if ref.agent_id:
            entry["agent_id"] = ref.agent_id
        else:
            entry["name"] = ref.name
        agents.append(entry)
    return {
        "id": path.stem,
        "file": path.name,
        "title": panel.title or path.stem,
        "description": panel.description,
        "agents": agents,
        "prompts": list(panel.prompts),
        "options": _request_options(panel),
    }


def _request_options(panel: PanelConfig) -> dict[str, Any]:
    # The page sends these back in POST /v1/fanouts, whose body rejects unknown keys: keep
    # only what a request may set (e.g. not cancel_timeout_s, a server-side setting).
    allowed = OptionsSpec.model_fields
    return {k: v for k, v in panel.options.kwargs().items() if k in allowed and v is not None}
