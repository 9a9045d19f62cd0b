"""The stack tests use the Letta stack's fixtures (and its hook that brings it up once)."""

from __future__ import annotations

from tests.letta.conftest import letta_client as letta_client
from tests.letta.conftest import letta_stack as letta_stack
from tests.letta.conftest import pytest_collection_finish as pytest_collection_finish
from tests.letta.conftest import scripted_agent as scripted_agent
