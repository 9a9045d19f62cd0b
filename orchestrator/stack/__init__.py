"""The local Letta stack for development and demos: letta 0.16.8, PostgreSQL, the model.

Never imported by the library at run time; the CLI's ``stack`` and ``demo`` commands and the
test suite use it. Its home folder is ``--home`` / ``$LETTA_FANOUT_STACK_DIR``, else
``./.letta``.
"""

from __future__ import annotations

from ._errors import StackError as StackError
from ._stack import DEFAULT_LETTA_PORT as DEFAULT_LETTA_PORT
from ._stack import StackConfig as StackConfig
from ._stack import StackInfo as StackInfo
from ._stack import ensure_stack as ensure_stack
from ._stack import stack_down as stack_down
from ._stack import stack_log as stack_log
from ._stack import stack_status as stack_status
from ._stack import stack_up as stack_up

__all__ = [
    "DEFAULT_LETTA_PORT",
    "StackConfig",
    "StackError",
    "StackInfo",
    "ensure_stack",
    "stack_down",
    "stack_log",
    "stack_status",
    "stack_up",
]
