"""Keys and tokens never reach a log: query values that carry them are redacted.

uvicorn writes each request's path with its query string (the access log) and each
WebSocket's (``uvicorn.error``); a stream token or key sent as ``?access_token=`` would be
written in clear. :func:`install_log_redaction` adds a filter to those loggers that
replaces such values with ``[redacted]`` before any handler formats the record.
"""

from __future__ import annotations

import logging
import re

__all__ = ["RedactTokens", "install_log_redaction", "redact"]

# Query parameters whose values are secrets (``token`` also matches ``access_token``).
_SECRET_VALUE = re.compile(r"((?:^|[?&;])[\w.-]*(?:token|key|secret)=)[^&#\s\"']*", re.I)

_LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact(text: str) -> str:
    """``text`` with the values of token/key query parameters replaced."""
    return _SECRET_VALUE.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """A logging filter that redacts secret query values in a record's message and args."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


_FILTER = RedactTokens()


def install_log_redaction() -> None:
    """Add the redacting filter to uvicorn's loggers (once; calling again does nothing)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
