"""Catalog files: an unknown or misnamed file, YAML that does not parse, a top level
that is not a mapping, missing required files and a missing folder each get a
message that names the file and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpupool.catalog import (
    CatalogError,
    load_catalog,
)
from tests.unit.catalog_edits import (
    ALLOWED_FILES,
    HUB_CONFIG,
    problems_of,
    the_problem,
)

# -- files -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["spec.yaml", "node.yml", "extra.yaml"])
def test_unknown_catalog_file(cat: Path, name: str) -> None:
    (cat / name).write_text("specs: []\n")
    assert the_problem(cat) == f"{name}: unknown catalog file; allowed files: {ALLOWED_FILES}"


def test_specs_yml_instead_of_yaml(cat: Path) -> None:
    (cat / "specs.yaml").rename(cat / "specs.yml")
    assert problems_of(cat) == [
        f"specs.yml: unknown catalog file; allowed files: {ALLOWED_FILES}",
        f"specs.yaml: missing from {cat}; a catalog needs specs.yaml and nodes.yaml",
    ]


def test_other_files_are_ignored(cat: Path) -> None:
    (cat / "README.md").write_text("# not a catalog\n")
    (cat / "notes.txt").write_text("x: [\n")
    assert load_catalog(cat).specs == load_catalog(HUB_CONFIG).specs


@pytest.mark.parametrize(
    ("fname", "text", "line"),
    [
        ("specs.yaml", "specs:\n  - slug: a: b\n", 2),
        ("nodes.yaml", "nodes:\n  - name: node-a\n    cpu: [1, 2\n  - name: x\n", 4),
        ("pool.yaml", "scheduler:\n\tnode_policy: binpack\n", 2),
        ("datasets.yaml", "datasets: []\n\n\n'unterminated: x\n", 5),
    ],
)
def test_invalid_yaml_names_the_line(cat: Path, fname: str, text: str, line: int) -> None:
    (cat / fname).write_text(text)
    problem = the_problem(cat)
    assert problem.startswith(f"{fname}: line {line}: not valid YAML: "), problem
    assert len(problem) > len(f"{fname}: line {line}: not valid YAML: ")


@pytest.mark.parametrize(
    ("fname", "text", "expected"),
    [
        (
            "specs.yaml",
            "- slug: a\n- slug: b\n",
            "must be a mapping with the key 'specs', got list",
        ),
        ("nodes.yaml", "node-a\n", "must be a mapping with the key 'nodes', got str"),
        ("images.yaml", "42\n", "must be a mapping with the key 'images', got int"),
        ("pool.yaml", "- binpack\n", "must be a mapping, got list"),
    ],
)
def test_top_level_not_a_mapping(cat: Path, fname: str, text: str, expected: str) -> None:
    (cat / fname).write_text(text)
    assert the_problem(cat) == f"{fname}: {expected}"


def test_empty_optional_file_is_an_empty_catalog_part(cat: Path) -> None:
    (cat / "datasets.yaml").write_text("# nothing yet\n")
    assert load_catalog(cat).datasets == ()


@pytest.mark.parametrize(
    "missing", [("specs.yaml",), ("nodes.yaml",), ("specs.yaml", "nodes.yaml")]
)
def test_missing_required_files(cat: Path, missing: tuple[str, ...]) -> None:
    for f in missing:
        (cat / f).unlink()
    assert problems_of(cat) == [
        f"{f}: missing from {cat}; a catalog needs specs.yaml and nodes.yaml" for f in missing
    ]


def test_missing_folder(tmp_path: Path) -> None:
    d = tmp_path / "does-not-exist"
    with pytest.raises(CatalogError) as info:
        load_catalog(d)
    assert info.value.problems == [
        f"{d}: catalog folder not found (set GPUPOOL_CONFIG_DIR to a folder with "
        f"specs.yaml and nodes.yaml; `gpupool init {d}` writes a starter one)"
    ]


def test_folder_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "catalog.yaml"
    f.write_text("specs: []\n")
    with pytest.raises(CatalogError) as info:
        load_catalog(str(f))
    assert len(info.value.problems) == 1
    assert "catalog folder not found" in info.value.problems[0]
