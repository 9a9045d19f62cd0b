from __future__ import annotations

import orchestrator


def test_all_exports_resolve_and_are_public() -> None:
    exported = orchestrator.__all__
    assert len(exported) == len(set(exported)), "duplicate names in __all__"
    for name in exported:
        assert hasattr(orchestrator, name), name
        assert not name.startswith("_")


def test_every_public_member_is_exported() -> None:
    members = {
        name
        for name, value in vars(orchestrator).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("orchestrator.")
    }
    assert members <= set(orchestrator.__all__)


def test_issue_api_names_exist() -> None:
    for name in ("open_fanout", "ScriptedSource", "Event", "FanOutResult", "Source", "collect"):
        assert name in orchestrator.__all__
