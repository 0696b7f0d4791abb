"""The pool dashboard and GPU-idle culling with real parts: two Docker engines started by
the test, the real single-user image, a real JupyterHub with configurable-http-proxy,
Chromium, and a real ``gpupool-agent`` on node-a reading a FAKE NVML (no GPU in CI:
tests/support/fake_nvml.py) whose utilization the test sets.

- GPU-idle culling: a server on node-a whose GPU reads 0 % gets a notice (read with the
  server's own token, as the lab does), then is stopped; its reservation is freed with
  the reason recorded;
- in Chromium, a pool admin finds "Pool" in the hub's navigation bar, sees the nodes, the
  GPUs split by owner and a user's server, drains a node and stops that server (each
  after a confirmation); a plain user has no such link and gets 403 from the dashboard.
Screenshots in .state/screenshots/dashboard-*.png.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.support.agent import SCRIPT, AgentProcess, write_world
from tests.support.catalogs import declared_gpus, write_engine_catalog
from tests.support.docker import Engine, ensure_docker_installed, start_engines
from tests.support.docker import stop_engines as stop_all
from tests.support.hub import ADMIN_PASSWORD, Hub
from tests.support.images import ensure_image
from tests.support.servers import api, pool, reservation_of, start, wait_ready, wait_stopped

pytestmark = [pytest.mark.docker, pytest.mark.hub]
SHOTS = Path(__file__).resolve().parents[2] / ".state" / "screenshots"
IDLE_TIMEOUT, WARN_BEFORE = 14, 8
NODE_A_GPUS = [g["uuid"] for g in declared_gpus("a", 2)]


def world(util: int) -> dict[str, Any]:
    return {
        "driver_version": "580.1",
        "cuda_version": 13000,
        "gpus": [
            {
                "uuid": uuid,
                "name": "NVIDIA A100-SXM4-80GB",
                "memory_total_mib": 81920,
                "utilization_gpu": util,
            }
            for uuid in NODE_A_GPUS
        ],
    }


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, Engine]]:
    ensure_docker_installed()
    engs = start_engines(["node-a", "node-b"])
    try:
        ensure_image(engs.values())
        yield engs
    finally:
        stop_all(engs)


@pytest.fixture(scope="module")
def agent(
    engines: dict[str, Engine], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing: run .venv/bin/pip install -e . --no-deps")
    a = AgentProcess(tmp_path_factory.mktemp("agent"), engines["node-a"])
    write_world(a.world, world(50))
    a.start()
    try:
        yield a
    finally:
        a.kill()


@pytest.fixture(scope="module")
def hub(
    engines: dict[str, Engine], agent: AgentProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hub]:
    d = write_engine_catalog(tmp_path_factory.mktemp("catalog"), engines)
    (d / "agent-token").write_text(agent.token.read_text())
    nodes = yaml.safe_load((d / "nodes.yaml").read_text())
    nodes["nodes"][0]["agent"] = {
        "url": f"http://127.0.0.1:{agent.port}",
        "token_file": "agent-token",
    }
    (d / "nodes.yaml").write_text(yaml.safe_dump(nodes))
    (d / "pool.yaml").write_text(
        yaml.safe_dump(
            {
                "admins": {"users": ["ada"]},
                "culling": {"gpu_idle_timeout": IDLE_TIMEOUT, "warn_before": WARN_BEFORE},
            }
        )
    )
    h = Hub(d).start()
    try:
        yield h
    finally:
        h.cleanup()


def until(what: str, check: Any, timeout: float, every: float = 0.25) -> Any:
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def spawn_on(hub: Hub, user: str, node: str, other: str) -> dict[str, Any]:
    """Start ``user``'s server on ``node`` (the other node drained meanwhile)."""
    token = hub.user_token(user)
    assert pool(hub, "POST", f"/nodes/{other}/drain").status_code == 200
    try:
        got = start(hub, user, token, {"spec": "a100-40g", "image": "lab"})
        assert got.status_code in (201, 202), got.text
        wait_ready(hub, user, token)
    finally:
        assert pool(hub, "POST", f"/nodes/{other}/undrain").status_code == 200
    r = reservation_of(hub, user)
    assert r["node"] == node
    return r


def test_gpu_idle_server_is_warned_then_stopped_and_the_reason_kept(
    hub: Hub, agent: AgentProcess, engines: dict[str, Engine]
) -> None:
    r = spawn_on(hub, "idris", "node-a", "node-b")
    # the lab side's token: the one the hub gave the server
    container = engines["node-a"].client().containers.get(r["container"])
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    server_token = env["JUPYTERHUB_API_TOKEN"]

    def notices() -> list[dict[str, Any]]:
        got = requests.get(
            f"{hub.pool}/notices",
            headers={"Authorization": f"token {server_token}"},
            timeout=10,
        )
        assert got.status_code == 200, got.text
        return got.json()["notices"]

    assert notices() == []
    write_world(agent.world, world(0))  # the GPU falls idle
    t0 = time.monotonic()
    (n,) = until("the idle notice", notices, IDLE_TIMEOUT + 10)
    warned = time.monotonic() - t0
    assert n["reservation"] == r["id"] and n["kind"] == "gpu-idle", n
    assert "stops this server at" in n["message"] and "idle for" in n["message"]
    # the server's token reads its own user's notices, not every user's
    everyone = requests.get(
        f"{hub.pool}/notices?all=1",
        headers={"Authorization": f"token {server_token}"},
        timeout=10,
    )
    assert everyone.status_code == 403
    wait_stopped(hub, "idris", timeout=IDLE_TIMEOUT + 30)
    stopped = time.monotonic() - t0
    done = pool(hub, "GET", f"/reservations/{r['id']}").json()
    assert done["state"] == "released"
    assert done["release_reason"].startswith("gpu-idle: no GPU utilization for"), done
    print(
        f"GPU idle (limit {IDLE_TIMEOUT} s, warn {WARN_BEFORE} s ahead): "
        f"warned after {warned:.1f} s, stopped after {stopped:.1f} s"
    )
    write_world(agent.world, world(50))


def test_dashboard_drain_and_stop_in_chromium(hub: Hub, engines: dict[str, Engine]) -> None:
    from playwright.sync_api import expect, sync_playwright

    r = spawn_on(hub, "uma", "node-a", "node-b")
    hub.user_token("vic")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )

        def login(name: str, password: str) -> Any:
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            page = ctx.new_page()
            page.goto(f"{hub.url}/hub/login")
            page.fill("#username_input", name)
            page.fill("#password_input", password)
            page.click("#login_submit")
            page.wait_for_url("**/hub/home**", timeout=30_000)
            return page

        # a plain user: no link in the hub's bar, and the dashboard says 403
        plain = login("vic", "test-user-password")
        expect(plain.locator(".navbar")).to_contain_text("Token")
        expect(plain.locator("#gpupool-pool-link")).to_have_count(0)
        got = plain.goto(f"{hub.url}/services/gpupool/admin")
        assert got is not None and got.status == 403
        expect(plain.locator("main")).to_contain_text("custom:gpupool:observe")
        plain.goto(f"{hub.url}/services/gpupool/usage")
        expect(plain.locator("nav.navbar")).to_contain_text("My usage")
        expect(plain.locator("#gpupool-pool-link")).to_have_count(0)

        # the pool admin
        page = login("ada", ADMIN_PASSWORD)
        page.on("dialog", lambda d: d.accept())  # the confirmations
        page.click("#gpupool-pool-link")
        page.wait_for_url("**/services/gpupool/admin**", timeout=30_000)
        expect(page.locator("h1")).to_contain_text("GPU pool")
        expect(page.locator("#node-node-a")).to_contain_text("agent ok")
        bar = page.locator("#node-node-a .mem span", has_text="uma")
        expect(bar).to_have_count(1)
        row = page.locator("#reservations tbody tr", has_text="uma")
        expect(row).to_contain_text("a100-40g")
        expect(row).to_contain_text("node-a")
        page.screenshot(path=str(SHOTS / "dashboard-admin.png"), full_page=True)
        # filter and group by user
        page.fill("#filter", "node-b")
        expect(page.locator("#node-node-a")).to_be_hidden()
        expect(page.locator("#node-node-b")).to_be_visible()
        page.fill("#filter", "")
        page.check("input[name=group][value=user]")
        expect(page.locator("#users tbody tr", has_text="uma")).to_contain_text("1")
        page.check("input[name=group][value=node]")

        # drain node-b
        page.locator("#node-node-b summary form button", has_text="Drain").click()
        page.wait_for_url("**/admin#node-node-b")
        expect(page.locator("#node-node-b .state")).to_have_text("draining")
        node_b = pool(hub, "GET", "/nodes/node-b").json()
        assert node_b["drained"] and node_b["state"] == "draining"
        # stop uma's server
        page.locator("#reservations tbody tr", has_text="uma").locator(
            "button", has_text="Stop server"
        ).click()
        page.wait_for_url("**/services/gpupool/admin")
        wait_stopped(hub, "uma", timeout=60)
        assert pool(hub, "GET", f"/reservations/{r['id']}").json()["state"] == "released"
        page.reload()
        expect(page.locator("#reservations tbody")).to_contain_text("nothing reserved")
        page.locator("#node-node-b summary form button", has_text="Undrain").click()
        page.wait_for_url("**/admin#node-node-b")
        expect(page.locator("#node-node-b .state")).to_have_text("up")
        page.screenshot(path=str(SHOTS / "dashboard-after.png"), full_page=True)
        # a forged post without the page's form token is refused
        forged = requests.post(
            f"{hub.url}/services/gpupool/admin/nodes/node-b/drain",
            cookies={c["name"]: c["value"] for c in page.context.cookies()},
            timeout=10,
            allow_redirects=False,
        )
        assert forged.status_code == 403, forged.status_code
        assert not pool(hub, "GET", "/nodes/node-b").json()["drained"]
        browser.close()
    assert api(hub, "GET", "/users/uma", hub.admin_token).json()["servers"] == {}
