"""The documentation says what the code does: the configuration reference is the one the
code generates, links point at files that exist, and the commands and API paths the
guides tell people to run exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpupool.cli import build_parser
from gpupool.docgen import render
from gpupool.pool.openapi import openapi_document

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]


def test_the_configuration_reference_is_current() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == render(), (
        "docs/configuration.md is stale: run `.venv/bin/python -m gpupool.docgen > "
        "docs/configuration.md`"
    )


def test_the_reference_covers_every_setting() -> None:
    text = render()
    for key in ("specs[].gpu_sm_percent", "nodes[].agent.token_file", "trainings.requeue_after"):
        assert f"`{key}`" in text
    for trait in (
        "GpuPoolSpawner.hami_cache_root",
        "PoolService.database_url",
        "AgentApp.interval",
    ):
        assert f"#### `{trait}`" in text
    assert "| `GPUPOOL_HUB_DB_URL` |" in text
    # every row says what its key is
    empty = [line for line in text.splitlines() if line.startswith("| `") and line.endswith("|  |")]
    assert not empty, empty


def code(text: str) -> str:
    """The fenced blocks and inline code spans of a Markdown text."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S))
    return "\n".join([*blocks, *spans])


def prose(text: str) -> str:
    """A Markdown text without its code."""
    return re.sub(r"`[^`\n]+`", "", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_point_at_files_that_exist(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", prose(page.read_text())):
        if re.match(r"[a-z]+://", target):
            continue
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which is missing"


def _commands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(sub.choices)  # type: ignore[attr-defined]


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_gpupool_commands_in_the_guides_exist(page: Path) -> None:
    known = _commands()
    used = set(re.findall(r"(?:^|[\s(])gpupool ([a-z][a-z-]+)", code(page.read_text()), re.M))
    assert used - known == set(), f"{page.name} names gpupool commands that do not exist"


def test_api_paths_in_the_operations_guide_exist() -> None:
    paths = openapi_document()["paths"]
    patterns = [re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$") for p in paths]
    used = re.findall(r"\$POOL(/[\w/{}.-]*)", (ROOT / "docs" / "operations.md").read_text())
    assert used
    for path in used:
        assert any(p.match(path) for p in patterns), f"operations.md uses {path}: not in the API"
