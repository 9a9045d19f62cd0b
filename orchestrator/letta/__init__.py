"""The Letta adapter: ``LettaSource`` (one agent's stream), its mapping, ``LettaDirectory``.

Builds on ``_core`` and ``config``; it never imports the local stack or ``testing``.
"""

from __future__ import annotations

from ._client import create_letta_client as create_letta_client
from ._client import default_base_url as default_base_url
from ._directory import LettaDirectory as LettaDirectory
from ._directory import SyncResult as SyncResult
from ._directory import create_letta_directory as create_letta_directory
from ._mapping import LettaMapper as LettaMapper
from ._mapping import classify_error as classify_error
from ._source import LettaSource as LettaSource

__all__ = [
    "LettaDirectory",
    "LettaMapper",
    "LettaSource",
    "SyncResult",
    "classify_error",
    "create_letta_client",
    "create_letta_directory",
    "default_base_url",
]
