"""YAML-configured batch runs: prompts x agents x repeats -> results on disk, resumable.

Builds on ``_core``, ``config`` and (through the directory it is given) any source.
"""

from __future__ import annotations

from ._config import LoadedBatch as LoadedBatch
from ._config import load_batch as load_batch
from ._plan import BatchPlan as BatchPlan
from ._plan import PromptItem as PromptItem
from ._plan import RetryPolicy as RetryPolicy
from ._runner import BatchObserver as BatchObserver
from ._runner import BatchRunner as BatchRunner
from ._runner import BatchSummary as BatchSummary
from ._runner import run_batch as run_batch
from ._store import read_jsonl as read_jsonl

__all__ = [
    "BatchObserver",
    "BatchPlan",
    "BatchRunner",
    "BatchSummary",
    "LoadedBatch",
    "PromptItem",
    "RetryPolicy",
    "load_batch",
    "read_jsonl",
    "run_batch",
]
