"""The documentation says what the code does: the configuration reference is the one the
code generates, links point at files and headings that exist, and the commands and API
paths the guides tell people to run exist. The README is the entry point: short, the two
quickstart commands first, and a link to every guide in docs/."""

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


LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes for a Markdown page's headings."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    made: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = 0
        while (f"{slug}-{n}" if n else slug) in made:
            n += 1
        made.add(f"{slug}-{n}" if n else slug)
    return made


def links(page: Path) -> list[tuple[str, str]]:
    """(target, anchor) of every link in a page's prose; target is "" within the page."""
    return LINK.findall(prose(page.read_text()))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_point_at_files_and_headings_that_exist(page: Path) -> None:
    for target, anchor in links(page):
        if re.match(r"[a-z]+:", target) or not (target or anchor):
            continue
        path = page.parent / target if target else page
        assert path.exists(), f"{page.name} links to {target}, which is missing"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), (
                f"{page.name} links to {target}#{anchor}: no such heading"
            )


def test_the_readme_is_an_entry_point() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines: move sections to docs/"
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", "\n".join(lines[:30]) + "\n", re.M | re.S)
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    for command in ("deploy/quickstart.sh", "tests/run.sh"):
        assert command in commands, (
            f"{command} is not in a code block in README.md's first 30 lines"
        )
    # the README's test command is the one CI runs
    assert "exec bash tests/run.sh" in (ROOT / ".ci" / "run").read_text()


def test_the_readme_links_every_guide() -> None:
    readme = ROOT / "README.md"
    linked = {(ROOT / target).resolve() for target, _ in links(readme) if target}
    unlinked = [page.name for page in DOCS if page.resolve() not in linked]
    assert not unlinked, f"README.md does not link docs/{unlinked}"


def _commands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(sub.choices)  # type: ignore[attr-defined]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
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
