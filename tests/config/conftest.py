"""The ``parser`` fixture: a test runs with libyaml's parser and with PyYAML's pure-Python one."""

from __future__ import annotations

import pytest
import yaml

from orchestrator.config import _yaml

LOADERS = ["libyaml", "python"] if yaml.__with_libyaml__ else ["python"]


@pytest.fixture(params=LOADERS)
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The YAML parser ``load_yaml`` uses in this test: ``libyaml`` or ``python`` (the fallback)."""
    if request.param == "python":
        monkeypatch.setattr(_yaml, "_Loader", _yaml._PyLoader)
    return str(request.param)
