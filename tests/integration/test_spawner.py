"""GpuPoolSpawner end to end, with real parts: two Docker engines started by the tests
(node-b over TCP with TLS on 127.0.0.1), the real single-user image, a real JupyterHub
with configurable-http-proxy and the pool service.

No GPU in CI: the nodes declare GPUs and run with no GPU runtime, and a stand-in
libvgpu.so (images/hami-stand-in, named as such) takes HAMi-core's place, so the
containers get every variable and mount of a sliced spec and the preload is seen to load
(tests/support/catalogs.py). Real HAMi-core on a real GPU: tests/gpu/.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.catalogs import write_engine_catalog
from tests.support.docker import Engine, ensure_docker_installed, start_engines, stop_engines
from tests.support.hub import Hub
from tests.support.images import ensure_image
from tests.support.servers import (
    api,
    pool,
    progress_messages,
    reservation_of,
    start,
    wait_ready,
    wait_stopped,
)

pytestmark = [pytest.mark.docker, pytest.mark.hub]


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, Engine]]:
    ensure_docker_installed()
    engs = start_engines(["node-a", "node-b"], tls_for={"node-b"})
    try:
        ensure_image(engs.values())
        yield engs
    finally:
        stop_engines(engs)


@pytest.fixture(scope="module")
def catalog(engines: dict[str, Engine], tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = write_engine_catalog(tmp_path_factory.mktemp("catalog"), engines)
    (d / "pool.yaml").write_text(yaml.safe_dump({"quotas": {"groups": {"no-gpu": {"gpus": 0}}}}))
    nodes = yaml.safe_load((d / "nodes.yaml").read_text())["nodes"]
    assert nodes[1]["engine"].startswith("tcp://127.0.0.1:") and "tls" in nodes[1]
    return d


@pytest.fixture(scope="module")
def hub(catalog: Path) -> Iterator[Hub]:
    h = Hub(catalog).start()
    try:
        yield h
    finally:
        h.cleanup()


def browser_session(hub: Hub, user: str) -> requests.Session:
    """A requests session logged in through the hub's login form, as a browser is."""
    s = requests.Session()
    s.get(f"{hub.url}/hub/login", timeout=30)
    r = s.post(
        f"{hub.url}/hub/login",
        data={
            "username": user,
            "password": "test-user-password",
            "_xsrf": s.cookies.get("_xsrf", ""),
        },
        timeout=30,
    )
    assert r.status_code == 200 and "/hub/login" not in r.url, r.url
    return s


def node_client(engines: dict[str, Engine], node: str):  # type: ignore[no-untyped-def]
    return engines[node].client()


def test_sliced_spec_lands_on_a_node_with_every_limit(hub: Hub, engines: dict[str, Engine]) -> None:
    token = hub.user_token("alice")
    r = start(hub, "alice", token, {"spec": "a100-40g", "image": "lab"})
    assert r.status_code in (201, 202), r.text + hub.log()
    wait_ready(hub, "alice", token)
    res = reservation_of(hub, "alice")
    assert res["container"] == "gpupool-nb-alice" and res["kind"] == "notebook"
    c = node_client(engines, res["node"]).containers.get("gpupool-nb-alice")
    cfg, hc = c.attrs["Config"], c.attrs["HostConfig"]
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["LD_PRELOAD"] == "/usr/local/vgpu/libvgpu.so"
    assert env["CUDA_DEVICE_MEMORY_LIMIT_0"] == "40960m"
    assert env["CUDA_DEVICE_SM_LIMIT_0"] == "50"
    assert env["CUDA_DEVICE_MEMORY_SHARED_CACHE"] == "/usr/local/vgpu/cache/vgpu.cache"
    assert env["GPUPOOL_RESERVATION"] == res["id"]
    # the spec's limits, as JupyterHub passes limits on (jupyter-resource-usage shows them)
    assert env["MEM_LIMIT"] == str(1024**3) and float(env["CPU_LIMIT"]) == 0.5
    # and its guarantees: what the node booked, the engine's weight and memory reservation
    assert env["MEM_GUARANTEE"] == str(512 * 1024**2) and float(env["CPU_GUARANTEE"]) == 0.25
    assert hc["CpuShares"] == 256 and hc["MemoryReservation"] == 512 * 1024**2
    assert res["cpu_millicores"] == 250 and res["memory_mib"] == 512
    assert cfg["Labels"]["io.gpupool.owner"] == "alice"
    assert cfg["Labels"]["io.gpupool.reservation"] == res["id"]
    assert cfg["Labels"]["io.gpupool.kind"] == "notebook"
    assert (
        hc["NanoCpus"] == 500_000_000 and hc["Memory"] == 1024 * 1024**2 and hc["PidsLimit"] == 4096
    )
    assert (
        hc["Privileged"] is False
        and hc["CapDrop"] == ["ALL"]
        and hc["SecurityOpt"] == ["no-new-privileges"]
    )
    assert hc["NetworkMode"] == "host" and not hc.get("DeviceRequests")
    binds = set(hc["Binds"])
    assert any(b.endswith(":/etc/ld.so.preload:ro") for b in binds)
    assert any(b.endswith(":/usr/local/vgpu/libvgpu.so:ro") for b in binds)
    assert "gpupool-home-alice:/home/jovyan:rw" in binds
    assert not any("docker.sock" in b for b in binds)
    # the preload reaches a process started with an empty environment (ld.so.preload, not LD_PRELOAD)
    out = c.exec_run(["env", "-i", "/usr/bin/env"]).output.decode()
    assert "GPUPOOL_HAMI_STAND_IN=loaded" in out
    # JupyterLab answers through the proxy
    status = requests.get(
        f"{hub.url}/user/alice/api/status", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert status.status_code == 200, status.text
    # stop: the container goes, the reservation is released, the home volume stays
    assert api(hub, "DELETE", "/users/alice/server", token).status_code in (202, 204)
    wait_stopped(hub, "alice")
    assert pool(hub, "GET", f"/reservations/{res['id']}").json()["state"] == "released"
    assert not node_client(engines, res["node"]).containers.list(
        all=True, filters={"label": "io.gpupool.owner=alice"}
    )
    assert node_client(engines, res["node"]).volumes.get("gpupool-home-alice")


def test_progress_events_say_what_happens(hub: Hub) -> None:
    """The hub's progress stream (what the spawn page shows) names the GPU, the node and
    each step."""

    token = hub.user_token("fay")
    # the POST returns when the server is ready (or after 10 s); read progress meanwhile
    pending = ThreadPoolExecutor(1).submit(start, hub, "fay", token, {"spec": "a100-40g"})
    messages = progress_messages(hub, "fay", token, timeout=180)
    assert pending.result().status_code in (201, 202)
    text = "\n".join(messages)
    res = reservation_of(hub, "fay")
    gpu = res["gpus"][0]["index"]
    assert f"reserved GPU {gpu} (40 GiB, 50 % SM) on {res['node']}" in text, text
    assert f"creating the container on {res['node']}" in text, text
    assert "waiting for JupyterLab" in text, text
    api(hub, "DELETE", "/users/fay/server", token)
    wait_stopped(hub, "fay")


def test_home_volume_keeps_files_across_stop_and_start(hub: Hub) -> None:
    token = hub.user_token("bea")
    h = {"Authorization": f"token {token}"}
    start(hub, "bea", token, {"spec": "a100-40g"})
    wait_ready(hub, "bea", token)
    node1 = reservation_of(hub, "bea")["node"]
    r = requests.put(
        f"{hub.url}/user/bea/api/contents/keep.txt",
        headers=h,
        json={"type": "file", "format": "text", "content": "kept"},
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text
    api(hub, "DELETE", "/users/bea/server", token)
    wait_stopped(hub, "bea")
    start(hub, "bea", token, {"spec": "a100-40g"})
    wait_ready(hub, "bea", token)
    assert reservation_of(hub, "bea")["node"] == node1  # binpack: same node, same volume
    r = requests.get(f"{hub.url}/user/bea/api/contents/keep.txt", headers=h, timeout=30)
    assert r.status_code == 200 and r.json()["content"] == "kept"
    api(hub, "DELETE", "/users/bea/server", token)
    wait_stopped(hub, "bea")


def test_bad_options_answer_400_listing_what_is_allowed(hub: Hub) -> None:
    token = hub.user_token("carl")
    r = start(hub, "carl", token, {"spec": "h100-80g"})
    assert r.status_code == 400
    assert "allowed: a100-40g, a100-1x" in r.json()["message"]
    r = start(hub, "carl", token, {"spec": "a100-40g", "env": {"LD_PRELOAD": "/tmp/x.so"}})
    assert r.status_code == 400 and "unknown option(s) env" in r.json()["message"]
    r = start(hub, "carl", token, {"spec": "a100-40g", "image": "docker.io/evil:latest"})
    assert r.status_code == 400 and "allowed: lab" in r.json()["message"]
    assert pool(hub, "GET", "/reservations?owner=carl").json()["reservations"] == []


def test_over_quota_answers_403_saying_which_quota(hub: Hub) -> None:
    token = hub.user_token("quinn", groups=("no-gpu",))
    r = start(hub, "quinn", token, {"spec": "a100-40g", "image": "lab"})
    assert r.status_code == 403, r.text
    msg = r.json()["message"]
    assert "quota of group no-gpu: at most 0 GPU(s) at a time" in msg and "0 left" in msg
    assert pool(hub, "GET", "/reservations?owner=quinn").json()["reservations"] == []
    wait_stopped(hub, "quinn")


def test_concurrent_spawns_never_oversubscribe(hub: Hub, engines: dict[str, Engine]) -> None:
    """20 users start at once for 8 slots (2 nodes x 2 GPUs x 2 halves): 8 run, 12 are told
    'capacity', nothing is left behind after they stop."""
    users = [f"u{i:02d}" for i in range(20)]
    tokens = {u: hub.user_token(u) for u in users}
    with ThreadPoolExecutor(max_workers=20) as ex:
        results = dict(
            zip(
                users,
                ex.map(lambda u: start(hub, u, tokens[u], {"spec": "a100-40g"}), users),
                strict=True,
            )
        )
    codes = sorted(r.status_code for r in results.values())
    started = [u for u, r in results.items() if r.status_code in (201, 202)]
    refused = [u for u, r in results.items() if r.status_code == 503]
    assert len(started) == 8 and len(refused) == 12, codes
    for u in refused:
        assert results[u].reason == "capacity"
        assert "no node has a free A100 with 40 GiB and 50 % SM" in results[u].json()["message"]
    for u in started:
        wait_ready(hub, u, tokens[u])
    active = pool(hub, "GET", "/reservations").json()["reservations"]
    assert len(active) == 8
    # the spawn form now greys the full spec out and says none fit
    form = browser_session(hub, refused[0]).get(f"{hub.url}/hub/spawn", timeout=30)
    assert form.status_code == 200, form.text[:500]
    assert 'class="gpupool-card full" data-spec="a100-40g"' in form.text, form.text
    per_gpu: dict[str, int] = {}
    for res in active:
        for g in res["gpus"]:
            per_gpu[g["uuid"]] = per_gpu.get(g["uuid"], 0) + g["memory_mib"]
    assert sorted(per_gpu.values()) == [81920] * 4
    with ThreadPoolExecutor(max_workers=8) as ex:
        list(ex.map(lambda u: api(hub, "DELETE", f"/users/{u}/server", tokens[u]), started))
    for u in started:
        wait_stopped(hub, u)
    assert pool(hub, "GET", "/reservations").json()["reservations"] == []
    for eng in engines.values():
        assert not eng.client().containers.list(
            all=True, filters={"label": "io.gpupool.kind=notebook"}
        )


def test_hub_restart_keeps_servers_and_reservations(hub: Hub) -> None:
    token = hub.user_token("dana")
    start(hub, "dana", token, {"spec": "a100-1x"})
    wait_ready(hub, "dana", token)
    before = reservation_of(hub, "dana")
    hub.stop()
    hub.start()
    wait_ready(hub, "dana", token, timeout=60)
    after = reservation_of(hub, "dana")
    assert after["id"] == before["id"] and after["gpus"] == before["gpus"]
    r = requests.get(
        f"{hub.url}/user/dana/api/status", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert r.status_code == 200
    api(hub, "DELETE", "/users/dana/server", token)
    wait_stopped(hub, "dana")


SHOTS = Path(__file__).resolve().parents[2] / ".state" / "screenshots"


def test_browser_login_pick_spec_progress_lab_and_run_a_cell(hub: Hub) -> None:
    """Chromium (Debian's, driven by Playwright): log in, pick a spec card, see the
    progress messages, land in JupyterLab and run a cell. Screenshots go to
    .state/screenshots/ for a person to look at."""
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{hub.url}/hub/login")
        page.fill("#username_input", "eve")
        page.fill("#password_input", "test-user-password")
        page.click("#login_submit")
        page.wait_for_url("**/hub/home")
        page.goto(f"{hub.url}/hub/spawn")
        cards = page.locator(".gpupool-card")
        expect(cards).to_have_count(2)
        expect(page.locator(".gpupool-card[data-spec=a100-40g]")).to_contain_text(
            "40 GiB GPU memory"
        )
        expect(page.locator(".gpupool-card[data-spec=a100-40g]")).to_contain_text("more fit now")
        page.screenshot(path=str(SHOTS / "1-spawn-form.png"), full_page=True)
        page.click(".gpupool-card[data-spec=a100-40g]")
        page.click("form#spawn_form input[type=submit], form#spawn_form button[type=submit]")
        page.wait_for_url("**/spawn-pending/**", timeout=30_000)
        page.screenshot(path=str(SHOTS / "2-progress.png"), full_page=True)
        page.wait_for_url("**/user/eve/lab**", timeout=180_000)
        try:
            launcher = page.locator(".jp-LauncherCard[data-category=Notebook]").first
            launcher.wait_for(timeout=90_000)
            page.screenshot(path=str(SHOTS / "3-lab.png"))
            # a notebook from the launcher, one cell, its output
            launcher.click()
            page.locator(".jp-Notebook-ExecutionIndicator[data-status=idle]").wait_for(
                timeout=90_000
            )
            # the kernel's own status line, so the cell is not typed before it can run
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=90_000)
            cell = page.locator(".jp-Notebook .jp-Cell .cm-content").first
            cell.click()
            page.keyboard.type("import os; print(6 * 7, os.environ['GPUPOOL_SPEC'])")
            page.keyboard.press("Shift+Enter")
            expect(page.locator(".jp-OutputArea-output").first).to_contain_text(
                "42 a100-40g", timeout=60_000
            )
            page.screenshot(path=str(SHOTS / "4-cell.png"))
        except Exception:
            page.screenshot(path=str(SHOTS / "failed.png"))
            raise
        browser.close()
    token = hub.user_token("eve")
    assert reservation_of(hub, "eve")["spec"] == "a100-40g"
    api(hub, "DELETE", "/users/eve/server", token)
    wait_stopped(hub, "eve")
