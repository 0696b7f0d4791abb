"""The catalog as loaded: the shipped hub_config/ loads cleanly, values parse into the
models with their defaults, doubtful but valid settings are warnings, and the node
agents', health, quota and culling settings are read. (What is refused, and how it is
said: test_catalog_problems.py.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpupool.catalog import (
    Catalog,
    CatalogError,
    Dataset,
    Image,
    config_dir,
    load_catalog,
    starter_dir,
)
from tests.unit.catalog_edits import (
    A10,
    GIB,
    HUB_CONFIG,
    NODE_A,
    TIB,
    deleter,
    edit,
    setter,
    the_problem,
    write,
)


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
    assert n.gpu_runtime == "none" and n.network == "bridge" and n.address == "127.0.0.1"
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
    assert n.network == "bridge"  # isolated unless a node says host
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
        f"specs.yaml and nodes.yaml; `gpupool init {missing}` writes a starter one)"
    ]


def test_default_dir_without_env_is_hub_config_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Not a path inside the installed package or the checkout: an installed gpupool finds
    the catalog where it is run, as JupyterHub finds jupyterhub_config.py."""
    monkeypatch.delenv("GPUPOOL_CONFIG_DIR", raising=False)
    assert config_dir() == Path("hub_config") and not config_dir().is_absolute()
    monkeypatch.chdir(HUB_CONFIG.parent)
    assert load_catalog().specs == load_catalog(HUB_CONFIG).specs
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CatalogError) as info:
        load_catalog()
    assert "`gpupool init hub_config` writes a starter one" in info.value.problems[0]
    monkeypatch.setenv("GPUPOOL_CONFIG_DIR", "")  # empty counts as unset
    assert config_dir() == Path("hub_config")


def test_the_starter_catalog_is_the_checkouts_hub_config_and_loads() -> None:
    assert starter_dir().resolve() == HUB_CONFIG.resolve()  # editable: read where it is
    assert load_catalog(starter_dir()).specs[0].slug == "cpu-small"


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


# -- guarantee and limit; overcommit ---------------------------------------------------
def test_guarantees_and_overcommit_load(cat: Path) -> None:
    edit(cat, "nodes.yaml", setter(("nodes", 0, "overcommit"), {"cpu": 4, "memory": 1.5}))
    c = load_catalog(cat)
    small = next(s for s in c.specs if s.slug == "cpu-small")
    assert (small.cpu_millicores, small.cpu_reserved) == (1000, 250)
    assert (small.memory_mib, small.memory_reserved) == (4 * GIB, 1 * GIB)
    whole = next(s for s in c.specs if s.slug == "a100-1x")
    assert whole.cpu_reserved == whole.cpu_millicores  # no guarantee: the limit is booked
    node = c.nodes[0]
    assert node.cpu_schedulable == 4 * node.cpu_millicores
    assert node.memory_schedulable == int(1.5 * node.memory_mib)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "cpu_guarantee",
            3,
            "cpu_guarantee: 3 is more than cpu (1); a guarantee is at most the limit",
        ),
        (
            "memory_guarantee",
            "8GiB",
            "memory_guarantee: 8GiB is more than memory (4GiB); a guarantee is at most the limit",
        ),
        ("cpu_guarantee", 0, "cpu_guarantee: 0 is out of range; must be at least 0.01"),
    ],
)
def test_a_guarantee_past_its_limit_is_refused_naming_both(
    cat: Path, key: str, value: object, message: str
) -> None:
    edit(cat, "specs.yaml", setter(("specs", 0, key), value))
    with pytest.raises(CatalogError) as info:
        load_catalog(cat)
    assert any(message in p and "slug 'cpu-small'" in p for p in info.value.problems), info.value


@pytest.mark.parametrize("factor", [0.5, 100, "lots"])
def test_an_overcommit_out_of_range_is_refused(cat: Path, factor: object) -> None:
    edit(cat, "nodes.yaml", setter(("nodes", 0, "overcommit"), {"cpu": factor}))
    with pytest.raises(CatalogError) as info:
        load_catalog(cat)
    assert any("overcommit" in p and "cpu" in p for p in info.value.problems), info.value


def test_a_spec_whose_cpu_limit_no_node_has_is_a_warning(cat: Path) -> None:
    edit(cat, "specs.yaml", setter(("specs", 0, "cpu"), 512))
    c = load_catalog(cat)
    assert any(
        "cpu: 512 is more than any node's CPUs" in w and "cpu-small" in w for w in c.warnings
    ), c.warnings
