"""The quickstart's catalog (`gpupool local-catalog`): the starter catalog with this
machine as its one node. On the 2-core machine the issue was found on, one 2-CPU server
filled the node although its CPU idled; with the starter's guarantees and the local
node's CPU overcommit, several users' servers fit at once, each still limited to its
spec's cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpupool.catalog import load_catalog, starter_dir
from gpupool.localnode import write_local_catalog
from gpupool.pool.scheduler import fits_now, place
from gpupool.pool.state import ClusterState, Placement, Request


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    import gpupool.localnode as local

    monkeypatch.setattr(local.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(local, "_mem_mib", lambda: 8 * 1024)
    monkeypatch.setattr(local, "nvml_gpus", lambda: ([], "no NVML here"))
    out = tmp_path / "catalog"
    write_local_catalog(
        starter_dir(), out, engine="unix:///var/run/docker.sock", hami_core="/x/libvgpu.so",
        real_hami=False,
    )  # fmt: skip
    return out


@pytest.mark.parametrize(("slug", "users"), [("cpu-small", 3), ("a100-20g", 3), ("a100-10g", 3)])
def test_three_users_hold_servers_at_once_on_two_cores(
    two_cores: Path, slug: str, users: int
) -> None:
    catalog = load_catalog(two_cores)
    (node,) = catalog.nodes
    assert node.cpu_millicores == 2000 and node.cpu_overcommit == 2
    spec = next(s for s in catalog.specs if s.slug == slug)
    state = ClusterState(catalog.nodes)
    req = Request.from_spec(spec)
    assert fits_now(state, req) >= users
    for k in range(users):
        p = place(state, req)
        assert isinstance(p, Placement), p
        state.apply(f"{slug}-{k}", p)
    # each booked its guarantee, not its limit; the limit still fits the node's cores
    assert state.cpu_used[0] == users * spec.cpu_reserved < users * spec.cpu_millicores
    assert spec.cpu_millicores <= node.cpu_millicores


def test_without_guarantees_one_two_core_server_fills_the_node(two_cores: Path) -> None:
    import dataclasses

    catalog = load_catalog(two_cores)
    hard = dataclasses.replace(
        next(s for s in catalog.specs if s.slug == "a100-20g"),
        cpu_guarantee_millicores=None,
        memory_guarantee_mib=None,
    )
    node = dataclasses.replace(catalog.nodes[0], cpu_overcommit=1.0)
    assert fits_now(ClusterState([node]), Request.from_spec(hard)) == 1


def test_the_demo_nodes_agent_is_in_its_catalog(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The quickstart runs the demo node's agent with simulated GPUs; the pool reads it."""
    import gpupool.localnode as local

    monkeypatch.setattr(local, "nvml_gpus", lambda: ([], "no NVML here"))
    token = tmp_path / "agent-token"
    token.write_text("t" * 64)
    out = tmp_path / "catalog"
    write_local_catalog(
        starter_dir(), out, engine="unix:///var/run/docker.sock", hami_core="/x/libvgpu.so",
        real_hami=False, agent_url="http://127.0.0.1:8003", agent_token_file=str(token),
    )  # fmt: skip
    (node,) = load_catalog(out).nodes
    assert node.agent is not None and node.agent.url == "http://127.0.0.1:8003"
    assert node.agent.token() == "t" * 64
    assert node.gpu_runtime == "none" and len(node.gpus) == 4  # declared, simulated
