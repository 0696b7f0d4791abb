"""Helpers for the catalog tests: break one thing in a private copy of hub_config/ and
read the problem that ``load_catalog`` reports (the ``cat`` fixture, in conftest.py,
makes the copy)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpupool.catalog import (
    CatalogError,
    load_catalog,
)

REPO = Path(__file__).resolve().parents[2]
HUB_CONFIG = REPO / "hub_config"
GIB = 1024
TIB = 1024 * 1024

SPEC_KEYS = (
    "cpu, cpu_guarantee, description, disk, display_name, gpu_memory, gpu_model, "
    "gpu_sm_percent, gpus, groups, images, memory, memory_guarantee, price_per_hour, slice, slug"
)
IMAGE_KEYS = "description, gpu, name, reference, slicing"
NODE_KEYS = "address, agent, cpu, disk, disk_quota, engine, gpu_runtime, gpus, hami_core, labels, memory, name, network, overcommit, ports, tls"
GPU_KEYS = "index, memory, model, uuid"
DATASET_KEYS = "description, format, name, path, read_only"
POOL_KEYS = "admins, alerts, culling, database_url, health, limits, observers, quotas, scheduler"

ALLOWED_FILES = "specs.yaml, images.yaml, nodes.yaml, datasets.yaml, pool.yaml"

A10 = "specs[1] (slug 'a100-10g')"
CPU_SMALL = "specs[0] (slug 'cpu-small')"
A1X = "specs[3] (slug 'a100-1x')"
NODE_A = "nodes[0] (name 'node-a')"
LAB = "images[0] (name 'lab')"
DIGITS = "datasets[0] (name 'digits')"


def read(directory: Path, fname: str) -> Any:
    return yaml.safe_load((directory / fname).read_text())


def write(directory: Path, fname: str, doc: Any) -> None:
    (directory / fname).write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def edit(directory: Path, fname: str, change: Callable[[Any], Any]) -> None:
    doc = read(directory, fname)
    out = change(doc)
    write(directory, fname, doc if out is None else out)


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(CatalogError) as info:
        load_catalog(directory)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.problems, "CatalogError without problems"
    # the exception text lists every problem
    for p in err.problems:
        assert p in str(err)
    return err.problems


def the_problem(directory: Path, *fragments: str) -> str:
    """The single reported problem, which must contain every fragment."""
    problems = problems_of(directory)
    assert len(problems) == 1, problems
    line = problems[0]
    for f in fragments:
        assert f in line, f"{f!r} not in {line!r}"
    return line


def second_node(doc: dict[str, Any], name: str = "node-b") -> dict[str, Any]:
    """A copy of node-a with its own name and GPU UUIDs."""
    n = copy.deepcopy(doc["nodes"][0])
    n["name"] = name
    for g in n["gpus"]:
        g["uuid"] = g["uuid"][:-4] + "b" + g["uuid"][-3:]
    return n


def setter(path: tuple[Any, ...], value: Any) -> Callable[[Any], None]:
    def change(doc: Any) -> None:
        for p in path[:-1]:
            doc = doc[p]
        doc[path[-1]] = value

    return change


def deleter(path: tuple[Any, ...]) -> Callable[[Any], None]:
    def change(doc: Any) -> None:
        for p in path[:-1]:
            doc = doc[p]
        del doc[path[-1]]

    return change
