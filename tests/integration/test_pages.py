"""The pool's pages in Chromium (Debian's, driven by Playwright) against the real hub:
log in through the hub, land on "My usage" through the hub's OAuth, see your own
reservations and quota and nobody else's; the pages sit in the hub's frame (its bar,
its light and dark themes) and take a deployer's templates from the catalog folder,
with a user's and a spec's names full of HTML escaped. Screenshots in
.state/screenshots/pages-*.png."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import CATALOG
from tests.support.hub import Hub

pytestmark = pytest.mark.hub
SHOTS = Path(__file__).resolve().parents[2] / ".state" / "screenshots"
EVIL_SPEC = """CPU <img src=x onerror="alert('spec')"> 'one' core"""
EVIL_USER = 'o\'brien<b>"x"'
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The test catalog with a deployer's templates/ (a link in the bar of every pool
    page, a note on the spawn form) and a spec whose name is HTML."""
    catalog = tmp_path_factory.mktemp("catalog")
    shutil.copytree(CATALOG, catalog, dirs_exist_ok=True)
    specs = yaml.safe_load((catalog / "specs.yaml").read_text())
    next(x for x in specs["specs"] if x["slug"] == "cpu-1")["display_name"] = EVIL_SPEC
    (catalog / "specs.yaml").write_text(yaml.safe_dump(specs))
    t = catalog / "templates" / "gpupool"
    t.mkdir(parents=True)
    (t / "page.html").write_text(
        '{% extends "builtin/gpupool/page.html" %}\n'
        "{% block nav_bar_left_items %}{{ super() }}"
        '<li class="nav-item"><a class="nav-link" id="site-wiki" href="/wiki">Lab wiki</a></li>'
        "{% endblock %}\n"
    )
    (t / "spawn_form.html").write_text(
        '<p id="site-form">Ask the lab before taking a whole card.</p>'
        '{% include "builtin/gpupool/spawn_form.html" %}\n'
    )
    h = Hub(catalog, watch_nodes=False).start()
    try:
        yield h
    finally:
        h.cleanup()


def reserve(hub: Hub, owner: str, spec: str) -> dict:
    """A reservation for ``owner`` as the hub's services make one (users cannot make
    bare ones)."""
    r = requests.post(
        f"{hub.pool}/reservations",
        headers={"Authorization": f"token {hub.automation_token}"},
        json={"spec": spec, "owner": owner},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_my_usage_page_shows_only_my_reservations_and_quota(hub: Hub) -> None:
    from playwright.sync_api import expect, sync_playwright

    uma = hub.user_token("uma", groups=("gpu-limited",))
    vic = hub.user_token("vic")
    mine = reserve(hub, "uma", "a100-40g")
    theirs = reserve(hub, "vic", "a100-1x")
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                ],
            )
            page = browser.new_page(viewport={"width": 1200, "height": 860})
            # not logged in: the page sends the browser to the hub's login
            page.goto(f"{hub.url}/services/gpupool/usage")
            page.wait_for_url("**/hub/login**")
            page.fill("#username_input", "uma")
            page.fill("#password_input", "test-user-password")
            page.click("#login_submit")
            page.wait_for_url("**/services/gpupool/usage**", timeout=30_000)
            expect(page.locator("h1")).to_contain_text("My usage")
            active = page.locator("#active tbody tr")
            expect(active).to_have_count(1)
            expect(active.first).to_contain_text("a100-40g")
            expect(active.first).to_contain_text(mine["node"])
            expect(active.first).to_contain_text("GPU ")
            expect(active.first).to_contain_text("(40 GiB)")
            expect(page.locator("main")).not_to_contain_text("a100-1x")  # vic's
            expect(page.locator("main")).to_contain_text("group gpu-limited")
            expect(page.locator(".card").first).to_contain_text("1 / 1")
            expect(page.locator("#by-spec tbody")).to_contain_text("a100-40g")
            page.screenshot(path=str(SHOTS / "pages-my-usage.png"), full_page=True)
            # a month with nothing in it
            page.fill("input[name=month]", "2020-01")
            page.click("form.month button")
            page.wait_for_url("**month=2020-01**")
            expect(page.locator("#by-spec tbody")).to_contain_text("nothing used this month")
            bad = page.goto(f"{hub.url}/services/gpupool/usage?month=soon")
            assert bad is not None and bad.status == 400
            expect(page.locator("main")).to_contain_text("YYYY-MM")
            browser.close()
    finally:
        for token, r in ((uma, mine), (vic, theirs)):
            requests.delete(
                f"{hub.pool}/reservations/{r['id']}",
                headers={"Authorization": f"token {token}"},
                timeout=30,
            )


def test_pages_sit_in_the_hubs_frame_with_a_deployers_templates(hub: Hub) -> None:
    """From My usage and from the dashboard, the hub's Home and Logout are one click away;
    the hub's light and dark themes apply; the catalog folder's templates are used; the
    names of a user and a spec full of HTML and quotes come out as text."""
    from playwright.sync_api import expect, sync_playwright

    hub.user_token(EVIL_USER)
    hub.user_token("ada", groups=("gpupool-admins",))
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)

        def login(name: str, scheme: str) -> Any:
            ctx = browser.new_context(viewport={"width": 1200, "height": 800}, color_scheme=scheme)
            page = ctx.new_page()
            page.on("dialog", lambda d: (_ for _ in ()).throw(AssertionError(d.message)))
            page.goto(f"{hub.url}/hub/login")
            page.fill("#username_input", name)
            page.fill("#password_input", "test-user-password")
            page.click("#login_submit")
            page.wait_for_url("**/hub/**", timeout=30_000)
            return page

        for scheme in ("light", "dark"):
            page = login(EVIL_USER, scheme)
            page.goto(f"{hub.url}/services/gpupool/usage")
            expect(page.locator("h1")).to_contain_text("My usage")
            bar = page.locator("nav.navbar")
            for item in ("Home", "Token", "Services", "My usage", "Logout", "Lab wiki"):
                expect(bar).to_contain_text(item)
            expect(page.locator("#gpupool-pool-link")).to_have_count(0)  # not an observer
            # the user's name is text, not markup
            expect(page.locator("#login_widget")).to_contain_text(EVIL_USER)
            expect(page.locator("#login_widget b")).to_have_count(0)
            theme = page.evaluate("document.documentElement.getAttribute('data-bs-theme')")
            assert theme == scheme, theme
            bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert (bg == "rgb(255, 255, 255)") == (scheme == "light"), bg
            page.screenshot(path=str(SHOTS / f"pages-usage-{scheme}.png"), full_page=True)
            # the spawn form: the deployer's note, the spec's name as text
            page.goto(f"{hub.url}/hub/spawn")
            expect(page.locator("#site-form")).to_be_visible()
            card = page.locator(".gpupool-card", has=page.locator("input[value=cpu-1]"))
            expect(card.locator(".title")).to_have_text(EVIL_SPEC)
            expect(card.locator("img")).to_have_count(0)
            page.screenshot(path=str(SHOTS / f"pages-spawn-form-{scheme}.png"), full_page=True)
            # Home is one click away, and Logout
            page.goto(f"{hub.url}/services/gpupool/usage")
            page.locator("nav.navbar a", has_text="Home").click()
            page.wait_for_url("**/hub/home**")
            page.goto(f"{hub.url}/services/gpupool/usage")
            page.locator("#logout").click()
            page.wait_for_url("**/hub/login**", timeout=30_000)
            page.context.close()

            admin = login("ada", scheme)
            admin.goto(f"{hub.url}/services/gpupool/admin")
            expect(admin.locator("h1")).to_contain_text("GPU pool")
            expect(admin.locator("#gpupool-pool-link")).to_have_class("nav-link active")
            expect(admin.locator("#site-wiki")).to_be_visible()
            admin.screenshot(path=str(SHOTS / f"pages-dashboard-{scheme}.png"), full_page=True)
            admin.locator("nav.navbar a", has_text="Home").click()
            admin.wait_for_url("**/hub/home**")
            # back in the hub: its bar links the dashboard for pool admins
            admin.click("#gpupool-pool-link")
            admin.wait_for_url("**/services/gpupool/admin**")
            admin.locator("#logout").click()
            admin.wait_for_url("**/hub/login**", timeout=30_000)
            admin.context.close()
        browser.close()
