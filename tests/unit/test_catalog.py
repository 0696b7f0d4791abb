"""Catalog validation: every kind of wrong value in hub_config/*.yaml gets a message that
names the file, the entry, the key, and what is allowed.

Each test copies the shipped hub_config/ into a temporary folder, breaks one thing, and
checks the problem line that ``load_catalog`` reports."""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import gpupool.catalog.load as load_module
from gpupool.catalog import (
    Catalog,
    CatalogError,
    Dataset,
    Image,
    config_dir,
    format_mib,
    load_catalog,
    parse_size_mib,
)
from gpupool.catalog.units import SIZE_HELP

REPO = Path(__file__).resolve().parents[2]
HUB_CONFIG = REPO / "hub_config"
GIB = 1024
TIB = 1024 * 1024

SPEC_KEYS = (
    "cpu, description, disk, display_name, gpu_memory, gpu_model, gpu_sm_percent, gpus, "
    "groups, images, memory, price_per_hour, slice, slug"
)
IMAGE_KEYS = "description, gpu, name, reference, slicing"
NODE_KEYS = "address, agent, cpu, disk, engine, gpu_runtime, gpus, hami_core, labels, memory, name, network, ports, tls"
GPU_KEYS = "index, memory, model, uuid"
DATASET_KEYS = "description, format, name, path, read_only"
POOL_KEYS = "admins, alerts, culling, database_url, health, observers, quotas, scheduler"

A10 = "specs[1] (slug 'a100-10g')"
CPU_SMALL = "specs[0] (slug 'cpu-small')"
A1X = "specs[3] (slug 'a100-1x')"
NODE_A = "nodes[0] (name 'node-a')"
LAB = "images[0] (name 'lab')"
DIGITS = "datasets[0] (name 'digits')"


# -- helpers ---------------------------------------------------------------------------
@pytest.fixture
def cat(tmp_path: Path) -> Path:
    """A private copy of hub_config/*.yaml that a test may break."""
    dst = tmp_path / "hub_config"
    dst.mkdir()
    for f in HUB_CONFIG.glob("*.yaml"):
        shutil.copy(f, dst / f.name)
    return dst


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


# -- the shipped catalog ---------------------------------------------------------------
def test_shipped_hub_config_loads_cleanly() -> None:
    c = load_catalog(HUB_CONFIG)
    assert isinstance(c, Catalog)
    assert c.warnings == ()
    assert c.specs and c.nodes
    # the entries the tests below break
    slugs = [s.slug for s in c.specs]
    assert slugs[:5] == ["cpu-small", "a100-10g", "a100-20g", "a100-1x", "a100-2x"]
    assert [n.name for n in c.nodes][:1] == ["node-a"]
    assert [i.name for i in c.images][:2] == ["lab", "lab-cpu"]
    assert [d.name for d in c.datasets][:1] == ["digits"]


def test_copied_catalog_loads_cleanly(cat: Path) -> None:
    c = load_catalog(cat)
    assert c.directory == str(cat)
    assert c.warnings == ()


def test_parsed_values(cat: Path) -> None:
    c = load_catalog(cat)
    s = c.spec("a100-10g")
    assert s is not None
    assert s.gpus == 1
    assert s.gpu_models == ("A100",)  # a string filter becomes a 1-tuple
    assert s.gpu_memory_mib == 10 * GIB
    assert s.gpu_sm_percent == 20
    assert s.cpu_millicores == 1000
    assert s.memory_mib == 4 * GIB
    assert s.disk_mib == 50 * GIB
    assert s.price_per_hour == pytest.approx(0.40)
    assert s.slice and not s.whole_cards
    whole = c.spec("a100-2x")
    assert whole is not None
    assert whole.gpu_memory_mib is None and whole.gpu_sm_percent is None
    assert whole.whole_cards and whole.gpus == 2
    assert whole.groups == ("gpu-power-users",)
    cpu = c.spec("cpu-small")
    assert cpu is not None
    assert cpu.gpus == 0 and cpu.gpu_models == () and cpu.cpu_millicores == 1000
    assert cpu.memory_mib == 4 * GIB and cpu.disk_mib == 20 * GIB
    assert c.spec("nope") is None

    n = c.node("node-a")
    assert n is not None
    assert n.cpu_millicores == 64_000
    assert n.memory_mib == 512 * GIB
    assert n.disk_mib == 4 * TIB
    assert n.gpu_runtime == "none" and n.network == "host" and n.address == "127.0.0.1"
    assert n.labels == {"zone": "demo"}
    assert n.tls is None
    assert [g.index for g in n.gpus] == [0, 1, 2, 3]
    assert all(g.memory_mib == 80 * GIB for g in n.gpus)
    assert n.gpus[0].model == "NVIDIA A100-SXM4-80GB"
    assert n.gpus[3].uuid == "GPU-00000000-0000-4000-8000-00000000a003"

    assert c.images[1] == Image(
        "lab-cpu",
        "gpupool/singleuser:latest",
        "The same JupyterLab, offered with CPU-only specs.",
        gpu=False,
        slicing=False,
    )
    d = c.datasets[0]
    assert isinstance(d, Dataset)
    assert (d.path, d.format, d.read_only) == ("/srv/gpupool/datasets/digits", "numpy", True)
    assert c.pool.node_policy == "binpack" and c.pool.gpu_policy == "binpack"
    assert c.pool.database_url is None
    assert c.pool.access.admin_groups == ("gpupool-admins",)
    assert c.pool.access.observer_groups == ("gpupool-observers",)


def test_gpu_model_list_and_fractional_values(cat: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        s = doc["specs"][1]
        s["gpu_model"] = ["A100", "h100"]
        s["cpu"] = 1.5
        s["memory"] = "1.5GiB"
        s["gpu_memory"] = "512MiB"
        del s["disk"]

    edit(cat, "specs.yaml", change)
    s = load_catalog(cat).spec("a100-10g")
    assert s is not None
    assert s.gpu_models == ("A100", "h100")
    assert s.cpu_millicores == 1500
    assert s.memory_mib == 1536
    assert s.gpu_memory_mib == 512
    assert s.disk_mib is None


def test_node_defaults_and_gpu_order(cat: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        n = doc["nodes"][0]
        for k in ("address", "network", "gpu_runtime", "hami_core", "disk", "labels"):
            del n[k]
        n["gpus"].reverse()

    edit(cat, "nodes.yaml", change)
    n = load_catalog(cat).nodes[0]
    assert n.address == "127.0.0.1"
    assert n.network == "host"
    assert n.gpu_runtime == "nvidia"
    assert n.hami_core == "/usr/local/vgpu/libvgpu.so"
    assert n.disk_mib is None
    assert n.labels == {}
    assert [g.index for g in n.gpus] == [0, 1, 2, 3]  # sorted by index


def test_optional_files_may_be_absent(cat: Path) -> None:
    for f in ("images.yaml", "datasets.yaml", "pool.yaml"):
        (cat / f).unlink()
    c = load_catalog(cat)
    assert c.images == () and c.datasets == ()
    assert c.pool.node_policy == "binpack" and c.pool.gpu_policy == "binpack"
    assert c.pool.access.admin_groups == ()
    assert c.specs == load_catalog(HUB_CONFIG).specs


def test_spread_policies_and_database_url(cat: Path) -> None:
    write(
        cat,
        "pool.yaml",
        {
            "scheduler": {"node_policy": "spread", "gpu_policy": "spread"},
            "database_url": "postgresql+psycopg://u@db/gpupool",
            "admins": {"users": ["root"]},
        },
    )
    p = load_catalog(cat).pool
    assert (p.node_policy, p.gpu_policy) == ("spread", "spread")
    assert p.database_url == "postgresql+psycopg://u@db/gpupool"
    assert p.access.admin_users == ("root",)


def test_spec_no_node_can_run_is_a_warning_not_an_error(cat: Path) -> None:
    edit(cat, "specs.yaml", setter(("specs", 1, "gpu_model"), "H100"))
    c = load_catalog(cat)
    assert len(c.warnings) == 1
    w = c.warnings[0]
    assert w.startswith(f"specs.yaml: {A10}: no declared node has 1 GPU(s) matching it")
    assert "models in the pool: NVIDIA A100-SXM4-80GB" in w


def test_spec_larger_than_any_card_is_a_warning(cat: Path) -> None:
    edit(cat, "specs.yaml", setter(("specs", 1, "gpu_memory"), "96GiB"))
    c = load_catalog(cat)
    assert [w.split(": ")[1] for w in c.warnings] == [A10]


@pytest.mark.parametrize(
    ("ports", "warned"),
    [("20000-29999", False), ("30000-32767", False), ("32000-33000", True), ("40000-40099", True)],
)
def test_a_port_range_in_linuxs_ephemeral_range_is_a_warning(
    cat: Path, ports: str, warned: bool
) -> None:
    """Outgoing connections on a node take local ports from 32768-60999 by default; a
    server given one of those can find it taken (the test suite's own CI met this)."""
    edit(cat, "nodes.yaml", setter(("nodes", 0, "ports"), ports))
    c = load_catalog(cat)
    assert c.nodes[0].ports == tuple(int(x) for x in ports.split("-"))
    found = [w for w in c.warnings if "ports:" in w]
    if warned:
        assert len(found) == 1, c.warnings
        assert found[0].startswith(f"nodes.yaml: nodes[0] (name 'node-a'): ports: '{ports}'")
        assert "32768-60999" in found[0] and "ip_local_port_range" in found[0]
    else:
        assert found == []


def test_gpupool_config_dir_is_honoured(cat: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUPOOL_CONFIG_DIR", str(cat))
    assert config_dir() == cat
    edit(cat, "specs.yaml", deleter(("specs", 0)))
    c = load_catalog()
    assert c.directory == str(cat)
    assert [s.slug for s in c.specs] == ["a100-10g", "a100-20g", "a100-1x", "a100-2x"]


def test_gpupool_config_dir_errors_name_that_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("GPUPOOL_CONFIG_DIR", str(missing))
    with pytest.raises(CatalogError) as info:
        load_catalog()
    assert info.value.problems == [
        f"{missing}: catalog folder not found (set GPUPOOL_CONFIG_DIR to a folder with "
        "specs.yaml and nodes.yaml)"
    ]


def test_default_dir_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPUPOOL_CONFIG_DIR", raising=False)
    assert config_dir() == load_module.DEFAULT_DIR
    assert load_module.DEFAULT_DIR.resolve() == HUB_CONFIG.resolve()
    assert load_catalog().specs == load_catalog(HUB_CONFIG).specs
    monkeypatch.setenv("GPUPOOL_CONFIG_DIR", "")  # empty counts as unset
    assert config_dir() == load_module.DEFAULT_DIR


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
    *[
        pytest.param(N, setter(("nodes", 0, "engine"), engine), [], id=f"engine-ok-without-tls-{i}")
        for i, engine in enumerate(
            [
                "tcp://127.0.0.1:2375",
                "tcp://localhost:2375",
                "tcp://[::1]:2375",
                "ssh://admin@gpu1.example.org",
                "unix:///run/docker.sock",
            ]
        )
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


# -- files -----------------------------------------------------------------------------
ALLOWED_FILES = "specs.yaml, images.yaml, nodes.yaml, datasets.yaml, pool.yaml"


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
        "specs.yaml and nodes.yaml)"
    ]


def test_folder_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "catalog.yaml"
    f.write_text("specs: []\n")
    with pytest.raises(CatalogError) as info:
        load_catalog(str(f))
    assert len(info.value.problems) == 1
    assert "catalog folder not found" in info.value.problems[0]


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


# -- units -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "mib"),
    [
        ("512MiB", 512),
        ("512Mi", 512),
        ("512M", 512),
        ("512MB", 512),
        ("20GiB", 20 * GIB),
        ("20gib", 20 * GIB),
        ("20 GiB", 20 * GIB),
        ("  20Gi  ", 20 * GIB),
        ("20G", 20 * GIB),
        ("20GB", 20 * GIB),
        ("1.5GiB", 1536),
        ("0.5GiB", 512),
        ("2TiB", 2 * TIB),
        ("2T", 2 * TIB),
        ("2tb", 2 * TIB),
        ("0.25TiB", 256 * GIB),
        ("1MiB", 1),
    ],
)
def test_parse_size_mib(text: str, mib: int) -> None:
    got = parse_size_mib(text)
    assert got == mib
    assert isinstance(got, int)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (32, f"32 has no unit; write {SIZE_HELP}"),
        (1.5, f"1.5 has no unit; write {SIZE_HELP}"),
        (0, f"0 has no unit; write {SIZE_HELP}"),
        (True, f"must be {SIZE_HELP}, got True"),
        (None, f"must be {SIZE_HELP}, got None"),
        (["20GiB"], f"must be {SIZE_HELP}, got ['20GiB']"),
        ("32", f"'32' is not {SIZE_HELP}"),
        ("32XB", f"'32XB' is not {SIZE_HELP}"),
        ("GiB", f"'GiB' is not {SIZE_HELP}"),
        ("", f"'' is not {SIZE_HELP}"),
        ("-1GiB", f"'-1GiB' is not {SIZE_HELP}"),
        ("1,5GiB", f"'1,5GiB' is not {SIZE_HELP}"),
        ("20 GiB RAM", f"'20 GiB RAM' is not {SIZE_HELP}"),
        ("1KiB", f"'1KiB' is not {SIZE_HELP}"),
        ("0GiB", "'0GiB' must be a positive whole number of MiB"),
        ("0.5MiB", "'0.5MiB' must be a positive whole number of MiB"),
        ("1.0001GiB", "'1.0001GiB' must be a positive whole number of MiB"),
    ],
)
def test_parse_size_mib_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_size_mib(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("mib", "text"),
    [
        (0, "0 MiB"),
        (1, "1 MiB"),
        (300, "300 MiB"),
        (1023, "1023 MiB"),
        (1024, "1 GiB"),
        (1536, "1.5 GiB"),
        (20 * GIB, "20 GiB"),
        (80 * GIB, "80 GiB"),
        (1100, "1.1 GiB"),
        (TIB, "1 TiB"),
        (4 * TIB, "4 TiB"),
        (TIB + GIB, "1025 GiB"),
        (TIB + 512, "1024.5 GiB"),
    ],
)
def test_format_mib(mib: int, text: str) -> None:
    assert format_mib(mib) == text


@given(st.integers(min_value=1, max_value=1023) | st.integers(1, 4096).map(lambda n: n * GIB))
def test_format_then_parse_round_trips(mib: int) -> None:
    assert parse_size_mib(format_mib(mib)) == mib


# -- node agents and pool health ------------------------------------------------------


def test_node_agent_and_health_settings(cat: Path) -> None:
    (cat / "agent-token").write_text("secret\n")
    edit(
        cat,
        "nodes.yaml",
        setter(
            ("nodes", 0, "agent"), {"url": "http://127.0.0.1:9445/", "token_file": "agent-token"}
        ),
    )
    edit(
        cat,
        "pool.yaml",
        lambda d: d.update(
            health={"probe_interval": 1, "orphan_grace": 60},
            alerts={"webhook": "https://alerts.example/hook", "gpu_temperature": 80},
        ),
    )
    c = load_catalog(cat)
    agent = c.nodes[0].agent
    assert agent is not None and agent.url == "http://127.0.0.1:9445"
    assert agent.token_file == str(cat / "agent-token") and agent.token() == "secret"
    assert c.pool.health.probe_interval == 1 and c.pool.health.orphan_grace == 60
    assert c.pool.health.reconcile_interval == 30  # defaults stay
    assert c.pool.alerts.webhook == "https://alerts.example/hook"
    assert c.pool.alerts.gpu_temperature == 80


def test_agent_token_file_must_exist(cat: Path) -> None:
    edit(
        cat,
        "nodes.yaml",
        setter(("nodes", 0, "agent"), {"url": "http://127.0.0.1:9445", "token_file": "nope"}),
    )
    the_problem(cat, f"nodes.yaml: {NODE_A}: agent.token_file: file", "nope not found")


def test_plain_http_agent_on_another_host_is_warned_about(cat: Path) -> None:
    (cat / "t").write_text("x")
    edit(
        cat,
        "nodes.yaml",
        setter(("nodes", 0, "agent"), {"url": "http://10.0.0.5:9445", "token_file": "t"}),
    )
    (w,) = load_catalog(cat).warnings
    assert "plain http to another host" in w and NODE_A in w


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (setter(("health", "probe_interval"), 0), "health.probe_interval"),
        (setter(("health", "down_after"), 0), "health.down_after"),
        (setter(("health", "every"), 3), "unknown key 'every'"),
        (setter(("alerts", "webhook"), "ftp://x"), "alerts.webhook"),
        (
            lambda d: d.update(health={"probe_interval": 1, "probe_timeout": 6}),
            "more than five probe intervals",
        ),
    ],
)
def test_bad_health_settings(cat: Path, change: Callable[[Any], Any], fragment: str) -> None:
    def ensure(d: Any) -> None:
        d.setdefault("health", {})
        d.setdefault("alerts", {})
        change(d)

    edit(cat, "pool.yaml", ensure)
    line = the_problem(cat, fragment)
    assert line.startswith("pool.yaml")


def test_quotas(cat: Path) -> None:
    edit(
        cat,
        "pool.yaml",
        lambda d: d.update(
            quotas={
                "default": {"gpus": 1},
                "groups": {"students": {"gpu_memory": "20GiB", "gpu_hours_per_month": 50}},
                "users": {"ada": {"gpus": 8}},
            }
        ),
    )
    q = load_catalog(cat).pool.quotas
    assert q.default is not None and q.default.gpus == 1
    assert q.groups["students"].gpu_memory_mib == 20 * GIB
    assert q.groups["students"].gpu_hours_per_month == 50 and q.users["ada"].gpus == 8


@pytest.mark.parametrize(
    ("quotas", "fragment"),
    [
        (
            {"groups": {"s": {"gpu_memory": 20}}},
            "pool.yaml: quotas.groups.s.gpu_memory: 20 has no unit",
        ),
        ({"users": {"a": {"gpus": -1}}}, "quotas.users.a.gpus"),
        ({"default": {"cpus": 2}}, "unknown key 'cpus'"),
    ],
)
def test_bad_quotas(cat: Path, quotas: dict, fragment: str) -> None:
    edit(cat, "pool.yaml", lambda d: d.update(quotas=quotas))
    the_problem(cat, fragment)


def test_culling(cat: Path) -> None:
    edit(cat, "pool.yaml", lambda d: d.update(culling={}))
    assert not load_catalog(cat).pool.culling.enabled  # off unless asked for
    edit(
        cat,
        "pool.yaml",
        lambda d: d.update(culling={"gpu_idle_timeout": 3600, "warn_before": 600}),
    )
    c = load_catalog(cat).pool.culling
    assert c.enabled and (c.gpu_idle_timeout, c.warn_before, c.busy_percent) == (3600, 600, 1)
    assert c.server_idle_timeout == 0


@pytest.mark.parametrize(
    ("culling", "fragment"),
    [
        (
            {"gpu_idle_timeout": 600, "warn_before": 900},
            "culling.warn_before: 900 s must be less than culling.gpu_idle_timeout (600 s)",
        ),
        ({"gpu_idle_timeout": -1}, "culling.gpu_idle_timeout"),
        ({"busy_percent": 101}, "culling.busy_percent"),
        ({"idle": 5}, "unknown key 'idle'"),
    ],
)
def test_bad_culling(cat: Path, culling: dict, fragment: str) -> None:
    edit(cat, "pool.yaml", lambda d: d.update(culling=culling))
    the_problem(cat, fragment)
