"""The lab side in a real server: the single-user image with the JupyterLab extension and
the server extension, spawned by a real JupyterHub on a Docker engine the test starts,
driven in Chromium.

- the status bar shows the slice the server holds (from the spawner's environment);
- a click opens the "GPU pool" panel: my slice, CPU and memory against the container's
  limits, free capacity per spec; the CPU figure moves when a terminal works;
- "Connect with SSH" in the panel shows the ~/.ssh/config block for this server;
- `gpupool status` and `gpupool specs` in a real lab terminal print the slice and the
  pool's specs (called with the server's own token).

CI has no GPU: the node has no GPU runtime, so the server's GPU is simulated
(gpupool.nvml.simulated, the quickstart's demo source): labelled so in the status bar
and the panel, its utilization following the container's CPU, so the status bar's figure
rises while `gpupool.nvml.simulated.load()` runs. Real NVML: tests/gpu/.
Screenshots in .state/screenshots/lab-*.png.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.docker import Engine
from tests.support.hub import Hub
from tests.support.pool import engines_with_images, hub_on
from tests.support.servers import api, reservation_of, start, wait_ready, wait_stopped

pytestmark = [pytest.mark.docker, pytest.mark.hub]
SHOTS = Path(__file__).resolve().parents[2] / ".state" / "screenshots"


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, Engine]]:
    with engines_with_images(["node-a"]) as engs:
        yield engs


@pytest.fixture(scope="module")
def hub(engines: dict[str, Engine], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with hub_on(engines, tmp_path_factory.mktemp("catalog")) as h:
        yield h


def cpu_cores(text: str) -> float:
    m = re.search(r"([0-9.]+) cores of", text)
    return float(m.group(1)) if m else -1.0


def test_status_bar_panel_and_cli_in_a_real_lab(hub: Hub) -> None:
    from playwright.sync_api import expect, sync_playwright

    token = hub.user_token("lina")
    got = start(hub, "lina", token, {"spec": "a100-40g", "image": "lab"})
    assert got.status_code in (201, 202), got.text
    wait_ready(hub, "lina", token)
    r = reservation_of(hub, "lina")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{hub.url}/hub/login")
        page.fill("#username_input", "lina")
        page.fill("#password_input", "test-user-password")
        page.click("#login_submit")
        page.wait_for_url("**/hub/home")
        page.goto(f"{hub.url}/user/lina/lab")
        try:
            status = page.locator("#gpupool-status")
            expect(status).to_contain_text("40 GiB · 50 % SM", timeout=90_000)
            page.screenshot(path=str(SHOTS / "lab-1-status-bar.png"))
            status.click()
            panel = page.locator("#gpupool-panel")
            expect(panel).to_be_visible()
            expect(panel.locator(".gp-slice")).to_contain_text(f"on {r['node']} · a100-40g")
            expect(panel.locator(".gp-capacity")).to_contain_text("A100 half")
            mygpu = panel.locator(".gp-mygpu")
            expect(mygpu.locator("h3")).to_have_text("My GPU (simulated)", timeout=30_000)
            expect(mygpu.locator(".gp-simulated")).to_contain_text("this node has no GPU")
            expect(status).to_contain_text("(simulated)")
            idle = status.inner_text()
            cpu = panel.locator(".gp-resources .gp-bar").first
            expect(cpu).to_contain_text("of 0.50 cores", timeout=30_000)
            page.screenshot(path=str(SHOTS / "lab-2-panel.png"))
            # "Connect with SSH": the ~/.ssh/config block for this server and this hub
            panel.locator(".gp-ssh-show").click()
            block = panel.locator(".gp-ssh-config")
            expect(block).to_contain_text("Host gpupool-lina", timeout=20_000)
            expect(block).to_contain_text(
                f"ProxyCommand gpupool-ssh-proxy {hub.url.replace('http://', 'ws://')}/user/lina/gpupool/ssh"
            )
            expect(block).to_contain_text("/services/gpupool/gpupool-ssh-proxy")  # the download
            block.scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "lab-3-ssh.png"))

            # a terminal: the CLI, and work that moves the CPU figure
            page.locator(".jp-LauncherCard[data-category=Other]", has_text="Terminal").click()
            term = page.locator(".jp-Terminal").first
            term.wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            term.click()
            page.keyboard.type(
                "gpupool status > status.txt 2>&1; gpupool specs > specs.txt 2>&1; "
                "python -c 'from gpupool.nvml.simulated import load; load(10)'\n"
            )
            t0 = time.monotonic()
            expect(cpu).to_contain_text(re.compile(r"0\.[3-9]\d cores of"), timeout=20_000)
            moved = time.monotonic() - t0
            print(f"\nCPU work in the terminal -> panel shows it after {moved:.1f} s")
            # the simulated GPU follows: the status bar's utilization rises from idle
            busy = re.compile(r"\| ([3-9]\d|100) % · .* \(simulated\)")
            expect(status).to_contain_text(busy, timeout=20_000)
            print(f"status bar: idle {idle!r} -> busy {status.inner_text()!r}")
            page.screenshot(path=str(SHOTS / "lab-3-busy.png"))

            def contents(name: str) -> str:
                for _ in range(40):
                    resp = page.request.get(f"{hub.url}/user/lina/api/contents/{name}")
                    if resp.ok and resp.json().get("content"):
                        return str(resp.json()["content"])
                    time.sleep(0.5)
                raise AssertionError(f"{name} was not written")

            st = contents("status.txt")
            assert f"spec a100-40g on node {r['node']}, reservation {r['id']} (active)" in st, st
            assert "of 0.5 cores" in st and "40.0 GiB" in st and "50 %" in st, st
            specs = contents("specs.txt")
            assert specs.splitlines()[0].split() == [
                "spec",
                "name",
                "GPUs",
                "GPU",
                "memory",
                "fits",
                "now",
                "price/h",
            ], specs
            assert "a100-40g" in specs and "A100 half" in specs

            # the dark theme: the panel is drawn with JupyterLab's variables only
            page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
            page.locator(".lm-Menu-itemLabel", has_text="Theme").first.click()
            page.locator(".lm-Menu-itemLabel").get_by_text("JupyterLab Dark", exact=True).click()
            page.wait_for_function(
                "() => document.body.dataset.jpThemeName === 'JupyterLab Dark'", timeout=30_000
            )
            page.wait_for_timeout(1000)
            bg = page.evaluate(
                "() => getComputedStyle(document.getElementById('gpupool-panel')).backgroundColor"
            )
            assert bg != "rgb(255, 255, 255)", bg
            page.screenshot(path=str(SHOTS / "lab-4-dark.png"))
        except Exception:
            page.screenshot(path=str(SHOTS / "lab-failed.png"))
            raise
        browser.close()
    api(hub, "DELETE", "/users/lina/server", token)
    wait_stopped(hub, "lina")
