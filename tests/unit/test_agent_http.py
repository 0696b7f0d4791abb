"""The node agent's HTTP side, in-process on a loopback port, with the fake NVML: token
checks, the JSON contract the pool consumes, /metrics, read-only, refusals to start."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from gpupool import __version__
from gpupool.agent.app import TOKEN_ENV, AgentApp, AgentConfigError
from tests.support import fake_nvml
from tests.support.ports import free_base_port

TOKEN = "t0ken-" + "x" * 40


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[fake_nvml.World]:
    monkeypatch.delenv(fake_nvml.ENV, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    yield fake_nvml.world.reset(gpus=2)
    fake_nvml.world.reset(gpus=2)


def token_file(tmp_path: Path, mode: int = 0o600, text: str = TOKEN + "\n") -> Path:
    p = tmp_path / "agent.token"
    p.write_text(text)
    p.chmod(mode)
    return p


def make_app(tmp_path: Path, **kw: Any) -> AgentApp:
    settings: dict[str, Any] = {
        "port": free_base_port((0,)),
        "nvml_module": "tests.support.fake_nvml",
        "docker_url": "",
        "interval": 0.05,
        "node_name": "node-a",
    }
    settings.update(kw)
    if "token_file" not in settings:
        settings["token_file"] = str(token_file(tmp_path))
    app = AgentApp(**settings)
    app.xid_wait_ms = 50  # stops within 50 ms, not a second
    return app


@pytest.fixture
async def agent(world: fake_nvml.World, tmp_path: Path) -> AsyncIterator[AgentApp]:
    app = make_app(tmp_path)
    app.initialize([])
    await app.start_serving()
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, app.agent.first.wait, 10)
    try:
        yield app
    finally:
        await app.stop_serving()


async def get(
    app: AgentApp, path: str, auth: str | None = f"token {TOKEN}", method: str = "GET"
) -> HTTPResponse:
    headers = {"Authorization": auth} if auth is not None else {}
    return await AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{app.port}{path}",
        method=method,
        headers=headers,
        body=b"{}" if method in ("POST", "PUT") else None,
        raise_error=False,
    )


@pytest.mark.parametrize("path", ["/api/inventory", "/api/sample", "/metrics"])
@pytest.mark.parametrize(
    "auth",
    [None, "", "token", f"token {TOKEN}x", f"token {TOKEN[:-1]}", f"Basic {TOKEN}", "token wrong"],
)
async def test_data_endpoints_want_the_token(agent: AgentApp, path: str, auth: str | None) -> None:
    r = await get(agent, path, auth)
    assert r.code == 401
    assert r.headers["Content-Type"].startswith("application/json")
    doc = json.loads(r.body)
    assert doc["status"] == 401 and "token" in doc["message"]
    assert TOKEN not in r.body.decode()


@pytest.mark.parametrize("scheme", ["token", "Bearer", "bearer"])
async def test_token_or_bearer(agent: AgentApp, scheme: str) -> None:
    for path in ("/api/inventory", "/api/sample", "/metrics"):
        r = await get(agent, path, f"{scheme} {TOKEN}")
        assert r.code == 200, (path, r.body)


async def test_health_needs_no_token(agent: AgentApp) -> None:
    r = await get(agent, "/health", None)
    assert r.code == 200 and json.loads(r.body) == {"status": "ok"}


async def test_unknown_paths_answer_json_404(agent: AgentApp) -> None:
    for path in ("/", "/api", "/api/samples", "/metrics/x"):
        r = await get(agent, path, None)
        assert r.code == 404 and json.loads(r.body)["status"] == 404, path


async def test_inventory_contract(agent: AgentApp) -> None:
    doc = json.loads((await get(agent, "/api/inventory")).body)
    assert set(doc) == {"hostname", "node", "agent_version", "nvml", "gpus"}
    assert doc["node"] == "node-a" and doc["agent_version"] == __version__
    assert isinstance(doc["hostname"], str) and doc["hostname"]
    assert doc["nvml"] == {
        "ok": True,
        "error": None,
        "driver_version": "550.54.15",
        "cuda_version": "12.4",
    }
    assert [set(g) for g in doc["gpus"]] == [
        {"index", "uuid", "model", "memory_mib", "mig_mode", "pci_bus_id"}
    ] * 2
    assert [g["uuid"] for g in doc["gpus"]] == [g.uuid for g in fake_nvml.world.gpus]


async def test_sample_contract_and_it_follows_the_gpus(
    agent: AgentApp, world: fake_nvml.World
) -> None:
    doc = json.loads((await get(agent, "/api/sample")).body)
    assert set(doc) == {"time", "seq", "hostname", "node", "nvml", "gpus", "xid_events"}
    assert isinstance(doc["time"], float) and isinstance(doc["seq"], int) and doc["seq"] >= 1
    assert set(doc["gpus"][0]) == {
        "index",
        "uuid",
        "utilization_gpu",
        "utilization_memory",
        "memory_used_mib",
        "memory_total_mib",
        "temperature_c",
        "power_w",
        "energy_mj",
        "processes",
    }
    world.gpus[1].utilization_gpu = 93
    world.gpus[1].processes = [fake_nvml.Proc(pid=4242, used_mib=512)]
    world.emit_xid(1, 79)
    for _ in range(200):
        doc2 = json.loads((await get(agent, "/api/sample")).body)
        if doc2["gpus"][1]["utilization_gpu"] == 93 and doc2["xid_events"]:
            break
        await asyncio.sleep(0.02)
    assert doc2["seq"] > doc["seq"]
    assert doc2["gpus"][1]["utilization_gpu"] == 93
    assert doc2["gpus"][1]["processes"][0] | {"container_id": None} == {
        "pid": 4242,
        "memory_mib": 512,
        "container_id": None,
        "owner": None,
        "reservation": None,
        "server": None,
        "kind": None,
    }
    ev = doc2["xid_events"][0]
    assert (ev["seq"], ev["index"], ev["xid"], ev["uuid"]) == (1, 1, 79, world.gpus[1].uuid)


async def test_metrics_is_prometheus_text(agent: AgentApp) -> None:
    r = await get(agent, "/metrics")
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = r.body.decode()
    assert "# TYPE DCGM_FI_DEV_GPU_UTIL gauge" in text
    assert 'device="nvidia1"' in text and "gpupool_agent_nvml_up" in text


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_nothing_can_be_changed(agent: AgentApp, method: str) -> None:
    for path in ("/api/inventory", "/api/sample", "/metrics", "/health"):
        r = await AsyncHTTPClient().fetch(
            f"http://127.0.0.1:{agent.port}{path}",
            method=method,
            headers={"Authorization": f"token {TOKEN}"},
            body=b"{}" if method in ("POST", "PUT", "PATCH") else None,
            raise_error=False,
        )
        assert r.code == 405, (method, path, r.code)


async def test_nvml_down_still_answers(world: fake_nvml.World, tmp_path: Path) -> None:
    world.init_error = fake_nvml.NVML_ERROR_LIBRARY_NOT_FOUND
    app = make_app(tmp_path)
    app.initialize([])
    await app.start_serving()
    try:
        await asyncio.get_running_loop().run_in_executor(None, app.agent.first.wait, 10)
        doc = json.loads((await get(app, "/api/inventory")).body)
        assert doc["gpus"] == [] and doc["nvml"]["ok"] is False
        assert "NVML Shared Library Not Found" in doc["nvml"]["error"]
        assert "gpupool_agent_nvml_up{" in (await get(app, "/metrics")).body.decode()
    finally:
        await app.stop_serving()


# -- refusals to start ---------------------------------------------------------------------------
def test_refuses_to_start_without_a_token(world: fake_nvml.World, tmp_path: Path) -> None:
    app = make_app(tmp_path, token_file="")
    with pytest.raises(AgentConfigError, match="no token configured") as e:
        app.initialize([])
    assert "AgentApp.token_file" in str(e.value) and TOKEN_ENV in str(e.value)


def test_token_from_the_environment(world: fake_nvml.World, tmp_path: Path) -> None:
    os.environ[TOKEN_ENV] = " envtoken \n"
    try:
        app = make_app(tmp_path, token_file="")
        app.initialize([])
        assert app.token == "envtoken"
    finally:
        del os.environ[TOKEN_ENV]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_refuses_a_token_file_others_can_read(
    world: fake_nvml.World, tmp_path: Path, mode: int
) -> None:
    path = token_file(tmp_path, mode)
    app = make_app(tmp_path, token_file=str(path))
    with pytest.raises(AgentConfigError, match=re.escape(f"chmod 600 {path}")) as e:
        app.initialize([])
    assert f"mode {mode:o}" in str(e.value) and str(path) in str(e.value)


def test_a_systemd_credential_is_accepted_whatever_its_mode_bits(
    world: fake_nvml.World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    path = token_file(creds, 0o440)  # an ACL mask shows as group bits
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    app = make_app(tmp_path, token_file=str(path))
    app.initialize([])
    assert app.token == TOKEN
    # the same file outside the credentials directory is refused
    other = token_file(tmp_path, 0o440)
    with pytest.raises(AgentConfigError, match="chmod 600"):
        make_app(tmp_path, token_file=str(other)).initialize([])


def test_refuses_an_empty_or_missing_token_file(world: fake_nvml.World, tmp_path: Path) -> None:
    empty = token_file(tmp_path, text="  \n")
    with pytest.raises(AgentConfigError, match="is empty"):
        make_app(tmp_path, token_file=str(empty)).initialize([])
    with pytest.raises(AgentConfigError, match="cannot read it"):
        make_app(tmp_path, token_file=str(tmp_path / "nope")).initialize([])


def test_refuses_an_nvml_module_that_does_not_import(
    world: fake_nvml.World, tmp_path: Path
) -> None:
    with pytest.raises(AgentConfigError, match=re.escape("AgentApp.nvml_module = 'no_such_nvml'")):
        make_app(tmp_path, nvml_module="no_such_nvml").initialize([])


def test_settings_are_checked(world: fake_nvml.World, tmp_path: Path) -> None:
    from traitlets import TraitError

    with pytest.raises(
        TraitError, match=re.escape("AgentApp.interval = 0.0; it must be 0.05 to 3600")
    ):
        make_app(tmp_path, interval=0.0)
    with pytest.raises(TraitError, match=re.escape("AgentApp.port = 70000")):
        make_app(tmp_path, port=70000)


async def test_an_agent_token_rotates_without_restarting_the_pool(
    world: fake_nvml.World, tmp_path: Path
) -> None:
    """docs/operations.md: a new token on the node, the agent restarted, the same token
    copied to the file nodes.yaml names; the pool reads that file at each probe, so the
    same catalog (no hub restart) fails while the two differ and works once they agree."""
    from gpupool.catalog.models import Agent, Node
    from gpupool.pool.health import AgentError, fetch_agent

    node_dir, pool_dir = tmp_path / "node", tmp_path / "pool"
    node_dir.mkdir()
    pool_dir.mkdir()
    pool_token = token_file(pool_dir)
    port = free_base_port((0,))
    node = Node(
        "node-a",
        "unix:///nonexistent",
        1000,
        1024,
        agent=Agent(url=f"http://127.0.0.1:{port}", token_file=str(pool_token)),
    )

    async def serve(token: str) -> AgentApp:
        app = make_app(node_dir, port=port, token_file=str(token_file(node_dir, text=token)))
        app.initialize([])
        await app.start_serving()
        return app

    app = await serve(TOKEN)
    try:
        assert (await fetch_agent(node, "/api/inventory", 5))["node"] == "node-a"
    finally:
        await app.stop_serving()
    new = "n3w-" + "y" * 40
    app = await serve(new)  # the node has the new token, the pool not yet
    try:
        with pytest.raises(AgentError, match="answered 401"):
            await fetch_agent(node, "/api/inventory", 5)
        pool_token.write_text(new + "\n")
        assert (await fetch_agent(node, "/api/inventory", 5))["node"] == "node-a"
    finally:
        await app.stop_serving()
