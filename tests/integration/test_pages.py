"""The pool's pages in Chromium (Debian's, driven by Playwright) against the real hub:
log in through the hub, land on "My usage" through the hub's OAuth, see your own
reservations and quota and nobody else's. Screenshots in .state/screenshots/pages-*.png."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.support.hub import Hub

pytestmark = pytest.mark.hub
SHOTS = Path(__file__).resolve().parents[2] / ".state" / "screenshots"


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
