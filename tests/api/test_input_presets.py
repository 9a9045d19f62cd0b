"""``GET /v1/presets`` parses in a worker thread, once per file change, within a size cap.

Before, every request parsed every ``configs/*.yaml`` on the event loop: one 10 MB file
froze ``/healthz`` and every stream for seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

import api._presets
from api._presets import MAX_PRESET_BYTES, PresetCache
from orchestrator import PanelConfig, load_panel

from .conftest import open_api

PANEL = "title: Pair\nagents:\n  - {id: alpha, label: A}\n  - {name: beta}\nprompts: [hello]\n"


class _Spy:
    """Stands in for ``load_panel``: records each file parsed, and where."""

    def __init__(self, before: Callable[[], None] | None = None) -> None:
        self.parsed: list[str] = []
        self.threads: set[int] = set()
        self.before = before

    def __call__(self, path: str | Path) -> PanelConfig:
        self.parsed.append(Path(path).name)
        self.threads.add(threading.get_ident())
        if self.before is not None:
            self.before()
        return load_panel(path)


@pytest.fixture
def configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # The app's page router reads ./configs, resolved at each request.
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "pair.yaml").write_text(PANEL)
    return folder


def _spy(monkeypatch: pytest.MonkeyPatch, spy: _Spy) -> _Spy:
    monkeypatch.setattr(api._presets, "load_panel", spy)
    return spy


async def test_a_10_mb_preset_file_is_reported_and_never_parsed(
    configs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = configs / "big.yaml"
    with big.open("w") as out:
        out.write("title: big\nagents:\n")
        while out.tell() < 10 * 1024 * 1024:
            out.write("  - {id: alpha, label: A}\n")
    spy = _spy(monkeypatch, _Spy())
    async with open_api() as api_:
        response = await api_.client.get("/v1/presets")
    assert response.status_code == 200
    body = response.json()
    assert [p["id"] for p in body["presets"]] == ["pair"]
    assert body["errors"] == [
        {
            "file": "big.yaml",
            "message": f"preset file is {big.stat().st_size} bytes, the maximum is "
            f"{MAX_PRESET_BYTES}; it was not read",
        }
    ]
    assert spy.parsed == ["pair.yaml"]


async def test_presets_parse_in_a_worker_thread_while_healthz_answers(
    configs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        assert release.wait(30), "the test never released the parse"

    spy = _spy(monkeypatch, _Spy(before=hold))
    async with open_api() as api_:
        result: dict[str, Any] = {}

        async def list_presets() -> None:
            result["presets"] = await api_.client.get("/v1/presets")

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(list_presets)
                await anyio.to_thread.run_sync(entered.wait)
                # The parse is stuck in its thread; the event loop still answers.
                health = await api_.client.get("/healthz")
                assert health.status_code == 200
                assert "presets" not in result
                release.set()
    assert [p["id"] for p in result["presets"].json()["presets"]] == ["pair"]
    assert threading.get_ident() not in spy.threads


async def test_an_unchanged_file_is_not_parsed_again(
    configs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (configs / "batch.yaml").write_text("prompts_file: x.jsonl\nruns: 3\n")  # not a panel
    spy = _spy(monkeypatch, _Spy())
    async with open_api() as api_:
        first = (await api_.client.get("/v1/presets")).json()
        second = (await api_.client.get("/v1/presets")).json()
        assert first == second
        assert sorted(spy.parsed) == ["batch.yaml", "pair.yaml"]
        # A changed file is parsed again, and only that one; a new file joins.
        (configs / "pair.yaml").write_text(PANEL.replace("Pair", "Pair, renamed"))
        (configs / "solo.yml").write_text("agents: [{id: alpha}]\n")
        third = (await api_.client.get("/v1/presets")).json()
        # A removed file leaves.
        (configs / "solo.yml").unlink()
        fourth = (await api_.client.get("/v1/presets")).json()
    assert sorted(spy.parsed) == ["batch.yaml", "pair.yaml", "pair.yaml", "solo.yml"]
    assert [p["title"] for p in third["presets"]] == ["Pair, renamed", "solo"]
    assert [p["id"] for p in fourth["presets"]] == ["pair"]


def test_a_panel_a_fan_out_would_refuse_is_an_error_entry(tmp_path: Path) -> None:
    # A valid panel config, but a request body caps the buffer at 100 000 events.
    (tmp_path / "bad.yaml").write_text("agents: [{id: alpha}]\noptions: {buffer: 200000}\n")
    (tmp_path / "ok.yaml").write_text(PANEL)
    result = PresetCache(tmp_path).read()
    assert [p.id for p in result.presets] == ["ok"]
    assert [e.file for e in result.errors] == ["bad.yaml"]
    assert "options.buffer" in result.errors[0].message


def test_a_missing_folder_has_no_presets(tmp_path: Path) -> None:
    result = PresetCache(tmp_path / "nope").read()
    assert (result.presets, result.errors) == ([], [])
