"""Catalog validation: every kind of wrong value in hub_config/*.yaml gets a message that
names the file, the entry, the key, and what is allowed; several problems are reported
together; files that are missing, misnamed or not YAML are named.

Each test copies the shipped hub_config/ into a temporary folder (the ``cat`` fixture),
breaks one thing, and checks the problem line that ``load_catalog`` reports."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpupool.catalog import (
    Catalog,
    load_catalog,
)
from gpupool.catalog.units import SIZE_HELP
from tests.unit.catalog_edits import (
    A1X,
    A10,
    ALLOWED_FILES,
    CPU_SMALL,
    DATASET_KEYS,
    DIGITS,
    GPU_KEYS,
    IMAGE_KEYS,
    LAB,
    NODE_A,
    NODE_KEYS,
    POOL_KEYS,
    SPEC_KEYS,
    deleter,
    edit,
    problems_of,
    read,
    second_node,
    setter,
    the_problem,
    write,
)

# -- one broken value, one message -----------------------------------------------------
S, IM, N, D, P = "specs.yaml", "images.yaml", "nodes.yaml", "datasets.yaml", "pool.yaml"

CASES: list[Any] = [
    # unknown keys: the message lists the allowed keys
    pytest.param(
        S,
        setter(("specs", 1, "colour"), "red"),
        [f"specs.yaml: {A10}: unknown key 'colour'; allowed keys: {SPEC_KEYS}"],
        id="unknown-key-spec",
    ),
    pytest.param(
        S,
        setter(("spec",), []),
        ["specs.yaml: unknown key 'spec'; allowed keys: specs"],
        id="unknown-key-specs-top",
    ),
    pytest.param(
        IM,
        setter(("images", 0, "tag"), "v1"),
        [f"images.yaml: {LAB}: unknown key 'tag'; allowed keys: {IMAGE_KEYS}"],
        id="unknown-key-image",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "zone"), "eu"),
        [f"nodes.yaml: {NODE_A}: unknown key 'zone'; allowed keys: {NODE_KEYS}"],
        id="unknown-key-node",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "gpus", 1, "mig"), True),
        [f"nodes.yaml: {NODE_A}: gpus[1]: unknown key 'mig'; allowed keys: {GPU_KEYS}"],
        id="unknown-key-gpu",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "tls"), {"ca": "a", "cert": "b", "key": "c", "password": "x"}),
        [f"nodes.yaml: {NODE_A}: tls: unknown key 'password'; allowed keys: ca, cert, key"],
        id="unknown-key-tls",
    ),
    pytest.param(
        D,
        setter(("datasets", 0, "owner"), "alice"),
        [f"datasets.yaml: {DIGITS}: unknown key 'owner'; allowed keys: {DATASET_KEYS}"],
        id="unknown-key-dataset",
    ),
    pytest.param(
        P,
        setter(("colour",), "red"),
        [f"pool.yaml: unknown key 'colour'; allowed keys: {POOL_KEYS}"],
        id="unknown-key-pool",
    ),
    pytest.param(
        P,
        setter(("scheduler", "gpu_polcy"), "spread"),
        ["pool.yaml: scheduler: unknown key 'gpu_polcy'; allowed keys: gpu_policy, node_policy"],
        id="unknown-key-pool-scheduler",
    ),
    pytest.param(
        P,
        setter(("admins", "people"), ["x"]),
        ["pool.yaml: admins: unknown key 'people'; allowed keys: groups, users"],
        id="unknown-key-pool-admins",
    ),
    # missing required keys
    pytest.param(
        S,
        deleter(("specs", 1, "memory")),
        [f"specs.yaml: {A10}: 'memory' is required"],
        id="missing-spec-memory",
    ),
    pytest.param(
        S,
        deleter(("specs", 1, "cpu")),
        [f"specs.yaml: {A10}: 'cpu' is required"],
        id="missing-spec-cpu",
    ),
    pytest.param(
        S,
        deleter(("specs", 1, "display_name")),
        [f"specs.yaml: {A10}: 'display_name' is required"],
        id="missing-spec-display-name",
    ),
    pytest.param(
        S,
        deleter(("specs", 1, "slug")),
        ["specs.yaml: specs[1]: 'slug' is required"],
        id="missing-spec-slug",
    ),
    pytest.param(
        IM,
        deleter(("images", 0, "reference")),
        [f"images.yaml: {LAB}: 'reference' is required"],
        id="missing-image-reference",
    ),
    pytest.param(
        N,
        deleter(("nodes", 0, "engine")),
        [f"nodes.yaml: {NODE_A}: 'engine' is required"],
        id="missing-node-engine",
    ),
    pytest.param(
        N,
        deleter(("nodes", 0, "gpus", 2, "uuid")),
        [f"nodes.yaml: {NODE_A}: gpus[2]: 'uuid' is required"],
        id="missing-gpu-uuid",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "tls"), {"ca": "a", "cert": "b"}),
        [f"nodes.yaml: {NODE_A}: tls: 'key' is required"],
        id="missing-tls-key",
    ),
    pytest.param(
        D,
        deleter(("datasets", 0, "format")),
        [f"datasets.yaml: {DIGITS}: 'format' is required"],
        id="missing-dataset-format",
    ),
    # wrong types
    pytest.param(
        S,
        setter(("specs", 1, "cpu"), "four"),
        [f"specs.yaml: {A10}: cpu: must be number, got 'four'"],
        id="type-spec-cpu",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "gpus"), "1"),
        [f"specs.yaml: {A10}: gpus: must be integer, got '1'"],
        id="type-spec-gpus-str",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "gpus"), 1.5),
        [f"specs.yaml: {A10}: gpus: must be integer, got 1.5"],
        id="type-spec-gpus-float",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "gpus"), True),
        [f"specs.yaml: {A10}: gpus: must be integer, got True"],
        id="type-spec-gpus-bool",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "slice"), "yes"),
        [f"specs.yaml: {A10}: slice: must be boolean, got 'yes'"],
        id="type-spec-slice",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "groups"), "gpu-users"),
        [f"specs.yaml: {A10}: groups: must be array, got 'gpu-users'"],
        id="type-spec-groups",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "groups"), ["ok", 7]),
        [f"specs.yaml: {A10}: groups[1]: must be string, got 7"],
        id="type-spec-groups-item",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "gpu_model"), 100),
        [
            f"specs.yaml: {A10}: gpu_model: 100 is not allowed; model filter: a substring "
            "or a list of substrings of the GPU model name"
        ],
        id="type-spec-gpu-model",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "display_name"), ""),
        [f"specs.yaml: {A10}: display_name: must not be empty"],
        id="empty-display-name",
    ),
    pytest.param(
        S,
        setter(("specs",), {"slug": "x"}),
        ["specs.yaml: specs: must be array, got {'slug': 'x'}"],
        id="type-specs-not-a-list",
    ),
    pytest.param(
        S,
        setter(("specs", 2), "a100-20g"),
        ["specs.yaml: specs[2]: must be object, got 'a100-20g'"],
        id="type-spec-not-a-mapping",
    ),
    pytest.param(
        IM,
        setter(("images", 1, "gpu"), "false"),
        ["images.yaml: images[1] (name 'lab-cpu'): gpu: must be boolean, got 'false'"],
        id="type-image-gpu",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "labels"), {"zone": 5}),
        [f"nodes.yaml: {NODE_A}: labels.zone: must be string, got 5"],
        id="type-node-label",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "gpus"), "all"),
        [f"nodes.yaml: {NODE_A}: gpus: must be array, got 'all'"],
        id="type-node-gpus",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "gpus", 0, "index"), "0"),
        [f"nodes.yaml: {NODE_A}: gpus[0].index: must be integer, got '0'"],
        id="type-gpu-index",
    ),
    pytest.param(
        D,
        setter(("datasets", 0, "read_only"), "no"),
        [f"datasets.yaml: {DIGITS}: read_only: must be boolean, got 'no'"],
        id="type-dataset-read-only",
    ),
    pytest.param(
        P,
        setter(("database_url",), 5),
        ["pool.yaml: database_url: must be string, got 5"],
        id="type-pool-database-url",
    ),
    pytest.param(
        P,
        setter(("admins", "groups"), "gpupool-admins"),
        ["pool.yaml: admins.groups: must be array, got 'gpupool-admins'"],
        id="type-pool-admin-groups",
    ),
    # values outside a fixed set: the message lists the allowed values
    pytest.param(
        N,
        setter(("nodes", 0, "gpu_runtime"), "docker"),
        [f"nodes.yaml: {NODE_A}: gpu_runtime: 'docker' is not allowed; allowed: nvidia, cdi, none"],
        id="enum-gpu-runtime",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "network"), "overlay"),
        [f"nodes.yaml: {NODE_A}: network: 'overlay' is not allowed; allowed: host, bridge"],
        id="enum-network",
    ),
    pytest.param(
        D,
        setter(("datasets", 0, "format"), "hdf5"),
        [
            f"datasets.yaml: {DIGITS}: format: 'hdf5' is not allowed; "
            "allowed: numpy, csv, image-folder, parquet, text, other"
        ],
        id="enum-dataset-format",
    ),
    pytest.param(
        P,
        setter(("scheduler", "node_policy"), "random"),
        ["pool.yaml: scheduler.node_policy: 'random' is not allowed; allowed: binpack, spread"],
        id="enum-node-policy",
    ),
    pytest.param(
        P,
        setter(("scheduler", "gpu_policy"), "Binpack"),
        ["pool.yaml: scheduler.gpu_policy: 'Binpack' is not allowed; allowed: binpack, spread"],
        id="enum-gpu-policy",
    ),
    # names and forms
    *[
        pytest.param(
            S,
            setter(("specs", 1, "slug"), bad),
            [
                f"specs.yaml: specs[1] (slug {bad!r}): slug: {bad!r} is not a valid name; use "
                "lowercase letters, digits and '-', starting and ending with a letter or digit, "
                "at most 63 characters"
            ],
            id=f"slug-{i}",
        )
        for i, bad in enumerate(["A100-10G", "a100_10g", "-a100", "a100-", "a" * 64, "a 100"])
    ],
    pytest.param(
        S,
        setter(("specs", 1, "slug"), ""),
        ["specs.yaml: specs[1] (slug ''): slug: '' is not a valid name; use lowercase"],
        id="slug-empty",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "name"), "Node_A"),
        ["nodes.yaml: nodes[0] (name 'Node_A'): name: 'Node_A' is not a valid name; use lowercase"],
        id="name-node",
    ),
    pytest.param(
        IM,
        setter(("images", 0, "name"), "Lab.PyTorch"),
        [
            "images.yaml: images[0] (name 'Lab.PyTorch'): name: 'Lab.PyTorch' is not a valid "
            "name; use lowercase"
        ],
        id="name-image",
    ),
    pytest.param(
        D,
        setter(("datasets", 0, "name"), "MNIST"),
        ["datasets.yaml: datasets[0] (name 'MNIST'): name: 'MNIST' is not a valid name"],
        id="name-dataset",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "gpus", 1, "uuid"), "1234-abcd"),
        [f"nodes.yaml: {NODE_A}: gpus[1].uuid: '1234-abcd' does not have the expected form"],
        id="form-gpu-uuid",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "engine"), "http://gpu1:2375"),
        [
            f"nodes.yaml: {NODE_A}: engine: 'http://gpu1:2375' does not have the expected form "
            "(Docker engine URL)"
        ],
        id="form-engine",
    ),
    pytest.param(
        IM,
        setter(("images", 0, "reference"), "gpupool/singleuser latest"),
        [f"images.yaml: {LAB}: reference: 'gpupool/singleuser latest' does not have the expected"],
        id="form-image-reference",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "hami_core"), "vgpu/libvgpu.so"),
        [f"nodes.yaml: {NODE_A}: hami_core: 'vgpu/libvgpu.so' must be an absolute path"],
        id="relative-hami-core",
    ),
    pytest.param(
        D,
        setter(("datasets", 0, "path"), "datasets/digits"),
        [f"datasets.yaml: {DIGITS}: path: 'datasets/digits' must be an absolute path"],
        id="relative-dataset-path",
    ),
    pytest.param(
        D,
        setter(("datasets", 0, "path"), "/srv/gpupool/../../etc"),
        [f"datasets.yaml: {DIGITS}: path: must not contain '..'"],
        id="dataset-path-dotdot",
    ),
    # sizes
    pytest.param(
        S,
        setter(("specs", 1, "memory"), "32"),
        [f"specs.yaml: {A10}: memory: '32' is not {SIZE_HELP}"],
        id="size-string-no-unit",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "memory"), "32XB"),
        [f"specs.yaml: {A10}: memory: '32XB' is not {SIZE_HELP}"],
        id="size-bad-unit",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "gpu_memory"), "ten GiB"),
        [f"specs.yaml: {A10}: gpu_memory: 'ten GiB' is not {SIZE_HELP}"],
        id="size-gpu-memory-words",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "disk"), "-5GiB"),
        [f"specs.yaml: {A10}: disk: '-5GiB' is not {SIZE_HELP}"],
        id="size-negative",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "gpu_memory"), "0GiB"),
        [f"specs.yaml: {A10}: gpu_memory: '0GiB' must be a positive whole number of MiB"],
        id="size-zero",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "memory"), "0.5MiB"),
        [f"specs.yaml: {A10}: memory: '0.5MiB' must be a positive whole number of MiB"],
        id="size-fraction-of-mib",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "memory"), "lots"),
        [f"nodes.yaml: {NODE_A}: memory: 'lots' is not {SIZE_HELP}"],
        id="size-node-memory",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "disk"), "4PB"),
        [f"nodes.yaml: {NODE_A}: disk: '4PB' is not {SIZE_HELP}"],
        id="size-node-disk-unit",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "gpus", 2, "memory"), "80"),
        [f"nodes.yaml: {NODE_A}: gpus[2]: memory: '80' is not {SIZE_HELP}"],
        id="size-gpu-memory-no-unit",
    ),
    # numbers out of range
    pytest.param(
        S,
        setter(("specs", 1, "cpu"), 0),
        [f"specs.yaml: {A10}: cpu: 0 is out of range; must be at least 0.01"],
        id="range-spec-cpu-zero",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "cpu"), -2),
        [f"specs.yaml: {A10}: cpu: -2 is out of range; must be at least 0.01"],
        id="range-spec-cpu-negative",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "gpus"), -1),
        [f"specs.yaml: {A10}: gpus: -1 is out of range; must be at least 0"],
        id="range-gpus-negative",
    ),
    pytest.param(
        S,
        setter(("specs", 4, "gpus"), 17),
        ["specs.yaml: specs[4] (slug 'a100-2x'): gpus: 17 is out of range; must be at most 16"],
        id="range-gpus-too-many",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "gpu_sm_percent"), 101),
        [f"specs.yaml: {A10}: gpu_sm_percent: 101 is out of range; must be at most 100"],
        id="range-sm-over-100",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "gpu_sm_percent"), 0),
        [f"specs.yaml: {A10}: gpu_sm_percent: 0 is out of range; must be at least 1"],
        id="range-sm-zero",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "price_per_hour"), -0.5),
        [f"specs.yaml: {A10}: price_per_hour: -0.5 is out of range; must be at least 0"],
        id="range-price-negative",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "cpu"), 0),
        [f"nodes.yaml: {NODE_A}: cpu: 0 is out of range; must be at least 0.01"],
        id="range-node-cpu",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "gpus", 0, "index"), -1),
        [f"nodes.yaml: {NODE_A}: gpus[0].index: -1 is out of range; must be at least 0"],
        id="range-gpu-index",
    ),
    # meaning across keys
    pytest.param(
        S,
        setter(("specs", 0, "gpu_memory"), "1GiB"),
        [
            f"specs.yaml: {CPU_SMALL}: gpu_memory: a CPU-only spec (gpus: 0) takes no gpu_memory; "
            "remove it or set gpus"
        ],
        id="cpu-only-with-gpu-memory",
    ),
    pytest.param(
        S,
        setter(("specs", 0, "gpu_model"), "A100"),
        [f"specs.yaml: {CPU_SMALL}: gpu_model: a CPU-only spec (gpus: 0) takes no gpu_model"],
        id="cpu-only-with-gpu-model",
    ),
    pytest.param(
        S,
        deleter(("specs", 0, "gpus")),  # gpus absent means 0: still a CPU-only spec
        [],
        id="cpu-only-gpus-absent-is-fine",
    ),
    pytest.param(
        S,
        setter(("specs", 3, "gpu_sm_percent"), 50),
        [
            f"specs.yaml: {A1X}: gpu_sm_percent: needs gpu_memory too; a spec without "
            "gpu_memory takes whole cards"
        ],
        id="sm-without-gpu-memory",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "slice"), False),
        [f"specs.yaml: {A10}: slice: is false, must be true: it sets gpu_memory"],
        id="slice-false-on-slice",
    ),
    pytest.param(
        S,
        setter(("specs", 3, "slice"), True),
        [
            f"specs.yaml: {A1X}: slice: is true, must be false: without gpu_memory it takes whole cards"
        ],
        id="slice-true-on-whole",
    ),
    pytest.param(
        S,
        setter(("specs", 1, "images"), ["lab", "lab-tf"]),
        [f"specs.yaml: {A10}: images: 'lab-tf' is not in images.yaml; known images: lab, lab-cpu"],
        id="unknown-image",
    ),
    # duplicates
    pytest.param(
        S,
        lambda d: d["specs"].append(copy.deepcopy(d["specs"][1])),
        ["specs.yaml: spec 'a100-10g' is defined twice; names must be unique"],
        id="duplicate-spec",
    ),
    pytest.param(
        IM,
        lambda d: d["images"].append(copy.deepcopy(d["images"][0])),
        ["images.yaml: image 'lab' is defined twice; names must be unique"],
        id="duplicate-image",
    ),
    pytest.param(
        D,
        lambda d: d["datasets"].append({**d["datasets"][0], "path": "/srv/other"}),
        ["datasets.yaml: dataset 'digits' is defined twice; names must be unique"],
        id="duplicate-dataset",
    ),
    pytest.param(
        N,
        lambda d: d["nodes"].append(second_node(d, "node-a")),
        ["nodes.yaml: node 'node-a' is defined twice; names must be unique"],
        id="duplicate-node",
    ),
    pytest.param(
        N,
        lambda d: d["nodes"].append(
            {**second_node(d), "gpus": [dict(d["nodes"][0]["gpus"][2], index=0)]}
        ),
        [
            "nodes.yaml: nodes[1] (name 'node-b'): gpus[0]: uuid "
            "GPU-00000000-0000-4000-8000-00000000a002 is also on node 'node-a'; "
            "GPU UUIDs are unique"
        ],
        id="duplicate-uuid-across-nodes",
    ),
    pytest.param(
        N,
        setter(("nodes", 0, "gpus", 1, "index"), 0),
        [
            f"nodes.yaml: {NODE_A}: gpus: index values repeat ([0, 0, 2, 3]); "
            "each GPU has its own index"
        ],
        id="duplicate-gpu-index",
    ),
    # Docker engines over TCP
    *[
        pytest.param(
            N,
            setter(("nodes", 0, "engine"), engine),
            [
                f"nodes.yaml: {NODE_A}: engine {engine} is TCP to another host without tls; "
                "add tls: {ca, cert, key}"
            ],
            id=f"tcp-without-tls-{i}",
        )
        for i, engine in enumerate(
            ["tcp://10.0.0.5:2375", "tcp://gpu1.example.org:2376", "tcp://[2001:db8::1]:2375"]
        )
    ],
    # loopback as well: a user container on host networking reached it (issue 17)
    *[
        pytest.param(
            N,
            setter(("nodes", 0, "engine"), engine),
            [
                f"nodes.yaml: {NODE_A}: engine {engine} is TCP on this host without tls; "
                "add tls: {ca, cert, key}"
            ],
            id=f"tcp-loopback-without-tls-{i}",
        )
        for i, engine in enumerate(
            ["tcp://127.0.0.1:2375", "tcp://localhost:2375", "tcp://[::1]:2375"]
        )
    ],
    *[
        pytest.param(N, setter(("nodes", 0, "engine"), engine), [], id=f"engine-ok-without-tls-{i}")
        for i, engine in enumerate(["ssh://admin@gpu1.example.org", "unix:///run/docker.sock"])
    ],
]


@pytest.mark.parametrize(("fname", "change", "expected"), CASES)
def test_one_broken_value(
    cat: Path, fname: str, change: Callable[[Any], Any], expected: list[str]
) -> None:
    edit(cat, fname, change)
    if not expected:
        assert isinstance(load_catalog(cat), Catalog)
        return
    problems = problems_of(cat)
    assert len(problems) == len(expected), problems
    for want, got in zip(expected, problems, strict=True):
        assert got.startswith(want), f"\nwant: {want}\ngot:  {got}"


def test_bare_number_size_is_refused_with_file_entry_and_key(cat: Path) -> None:
    edit(cat, "specs.yaml", setter(("specs", 1, "memory"), 32))
    line = the_problem(cat, "specs.yaml: ", A10, ": memory: ", "32")
    assert line.startswith(f"specs.yaml: {A10}: memory: ")


@pytest.mark.parametrize(
    ("fname", "path", "entry"),
    [
        ("specs.yaml", ("specs", 1, "memory"), f"{A10}: memory"),
        ("specs.yaml", ("specs", 1, "gpu_memory"), f"{A10}: gpu_memory"),
        ("nodes.yaml", ("nodes", 0, "disk"), f"{NODE_A}: disk"),
    ],
)
def test_bare_number_size_says_a_unit_is_needed(
    cat: Path, fname: str, path: tuple[Any, ...], entry: str
) -> None:
    edit(cat, fname, setter(path, 32))
    the_problem(cat, fname, entry, "32", "unit", "GiB")


@pytest.mark.parametrize(
    ("fname", "path", "fragment"),
    [
        ("specs.yaml", ("specs", 1, "slug"), "slug: 'a100-10g\\n' is not a valid name"),
        ("nodes.yaml", ("nodes", 0, "name"), "name: 'node-a\\n' is not a valid name"),
        ("datasets.yaml", ("datasets", 0, "name"), "name: 'digits\\n' is not a valid name"),
    ],
)
def test_name_with_trailing_newline_is_refused(
    cat: Path, fname: str, path: tuple[Any, ...], fragment: str
) -> None:
    doc = read(cat, fname)
    target = doc
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] += "\n"
    write(cat, fname, doc)
    the_problem(cat, fname, fragment)


def test_slice_message_on_cpu_only_spec_is_not_self_contradictory(cat: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["specs"][0]["gpu_memory"] = "1GiB"
        doc["specs"][0]["slice"] = True

    edit(cat, "specs.yaml", change)
    problems = problems_of(cat)
    assert any("takes no gpu_memory" in p for p in problems)
    for p in problems:
        m = re.search(r"slice: is (\w+), must be (\w+)", p)
        if m:
            assert m.group(1).lower() != m.group(2).lower(), p


def test_broken_images_file_does_not_cascade_into_specs(cat: Path) -> None:
    edit(cat, "specs.yaml", setter(("specs", 1, "images"), ["lab"]))
    edit(cat, "images.yaml", setter(("images", 0, "tag"), "v1"))
    the_problem(cat, "images.yaml", LAB, "unknown key 'tag'")


def test_spec_images_need_images_file(cat: Path) -> None:
    edit(cat, "specs.yaml", setter(("specs", 1, "images"), ["lab"]))
    (cat / "images.yaml").unlink()
    the_problem(
        cat,
        f"specs.yaml: {A10}: images: 'lab' is not in images.yaml; known images: none",
    )


def test_spec_images_restrict_images_for(cat: Path) -> None:
    edit(cat, "specs.yaml", setter(("specs", 1, "images"), ["lab-cpu"]))
    c = load_catalog(cat)
    s = c.spec("a100-10g")
    assert s is not None and s.images == ("lab-cpu",)
    assert [i.name for i in c.images_for(s)] == ["lab-cpu"]


# -- TLS files -------------------------------------------------------------------------
def tls_node(doc: dict[str, Any]) -> None:
    n = doc["nodes"][0]
    n["engine"] = "tcp://gpu1.example.org:2376"
    del n["address"]
    n["tls"] = {"ca": "certs/ca.pem", "cert": "certs/cert.pem", "key": "/abs/missing/key.pem"}


def test_tls_missing_files_are_named(cat: Path) -> None:
    (cat / "certs").mkdir()
    (cat / "certs" / "ca.pem").write_text("x")
    edit(cat, "nodes.yaml", tls_node)
    problems = problems_of(cat)
    assert problems == [
        f"nodes.yaml: {NODE_A}: tls.cert: file {cat / 'certs' / 'cert.pem'} not found",
        f"nodes.yaml: {NODE_A}: tls.key: file /abs/missing/key.pem not found",
    ]


def test_tls_files_present_load(cat: Path, tmp_path: Path) -> None:
    (cat / "certs").mkdir()
    for f in ("ca.pem", "cert.pem"):
        (cat / "certs" / f).write_text("x")
    key = tmp_path / "key.pem"
    key.write_text("x")

    def change(doc: dict[str, Any]) -> None:
        tls_node(doc)
        doc["nodes"][0]["tls"]["key"] = str(key)

    edit(cat, "nodes.yaml", change)
    n = load_catalog(cat).nodes[0]
    assert n.tls is not None
    assert n.tls.ca == str(cat / "certs" / "ca.pem")  # relative to the catalog folder
    assert n.tls.cert == str(cat / "certs" / "cert.pem")
    assert n.tls.key == str(key)
    assert n.address == "gpu1.example.org"  # from the engine URL when not given


# -- several problems at once ----------------------------------------------------------
def test_all_problems_are_reported_together(cat: Path) -> None:
    edit(cat, "specs.yaml", setter(("specs", 1, "colour"), "red"))
    edit(cat, "specs.yaml", setter(("specs", 2, "gpu_sm_percent"), 120))
    edit(cat, "nodes.yaml", setter(("nodes", 0, "gpu_runtime"), "docker"))
    edit(cat, "datasets.yaml", setter(("datasets", 0, "path"), "/srv/../etc"))
    edit(cat, "images.yaml", lambda d: d["images"].append(copy.deepcopy(d["images"][1])))
    (cat / "spec.yaml").write_text("specs: []\n")
    (cat / "pool.yaml").write_text("scheduler: [\n")
    problems = problems_of(cat)
    expected = [
        "pool.yaml: line ",
        f"spec.yaml: unknown catalog file; allowed files: {ALLOWED_FILES}",
        f"specs.yaml: {A10}: unknown key 'colour'",
        "specs.yaml: specs[2] (slug 'a100-20g'): gpu_sm_percent: 120 is out of range",
        f"nodes.yaml: {NODE_A}: gpu_runtime: 'docker' is not allowed",
        "images.yaml: image 'lab-cpu' is defined twice",
        f"datasets.yaml: {DIGITS}: path: must not contain '..'",
    ]
    assert len(problems) == len(expected), problems
    for want in expected:
        assert sum(p.startswith(want) for p in problems) == 1, (want, problems)


def test_several_problems_in_one_entry(cat: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        s = doc["specs"][1]
        s["gpus"] = -1
        s["gpu_sm_percent"] = 101
        s["colour"] = "red"
        del s["cpu"]

    edit(cat, "specs.yaml", change)
    problems = problems_of(cat)
    assert len(problems) == 4, problems
    assert all(p.startswith(f"specs.yaml: {A10}: ") for p in problems)
    joined = "\n".join(problems)
    for frag in (
        "'cpu' is required",
        "unknown key 'colour'",
        "gpus: -1 is out of range",
        "gpu_sm_percent: 101 is out of range",
    ):
        assert frag in joined


def test_several_meaning_problems_in_one_spec(cat: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        s = doc["specs"][0]  # cpu-small, gpus: 0
        s["gpu_sm_percent"] = 10
        s["memory"] = "4"
        s["images"] = ["nope"]

    edit(cat, "specs.yaml", change)
    problems = problems_of(cat)
    assert sorted(p.split(": ")[2] for p in problems) == [
        "gpu_sm_percent",
        "gpu_sm_percent",
        "images",
        "memory",
    ]
    assert all(p.startswith(f"specs.yaml: {CPU_SMALL}: ") for p in problems)


def test_problems_in_several_entries_name_each_entry(cat: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["nodes"].append(second_node(doc))
        doc["nodes"][0]["network"] = "overlay"
        doc["nodes"][1]["gpus"][3]["index"] = -1

    edit(cat, "nodes.yaml", change)
    problems = problems_of(cat)
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"nodes.yaml: {NODE_A}: network: 'overlay' is not allowed")
    assert problems[1].startswith(
        "nodes.yaml: nodes[1] (name 'node-b'): gpus[3].index: -1 is out of range"
    )
