"""The arena's store runs on both database backends, as the sessions' store does."""

from __future__ import annotations

from tests.sessions.conftest import database_url as database_url
