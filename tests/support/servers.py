"""Starting, waiting for and stopping users' servers through a test hub's REST API."""

from __future__ import annotations

import time

import requests

from .hub import Hub


def api(hub: Hub, method: str, path: str, token: str, **kw) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.request(
        method, f"{hub.api}{path}", headers={"Authorization": f"token {token}"}, timeout=60, **kw
    )


def pool(hub: Hub, method: str, path: str, **kw) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.request(
        method,
        f"{hub.pool}{path}",
        headers={"Authorization": f"token {hub.automation_token}"},
        timeout=60,
        **kw,
    )


def wait_ready(hub: Hub, user: str, token: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    missing_since: float | None = None
    while time.monotonic() < deadline:
        server = (
            api(hub, "GET", f"/users/{user}", hub.admin_token).json().get("servers", {}).get("")
        )
        if server and server.get("ready"):
            return server
        if server is None:  # a failed spawn removes the server
            missing_since = missing_since or time.monotonic()
            if time.monotonic() - missing_since > 5:
                raise AssertionError(f"{user}'s server is gone:\n{hub.log()[-3000:]}")
        else:
            missing_since = None
        time.sleep(0.5)
    raise AssertionError(f"{user}'s server not ready in {timeout}s:\n{hub.log()[-3000:]}")


def wait_stopped(hub: Hub, user: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not api(hub, "GET", f"/users/{user}", hub.admin_token).json().get("servers"):
            return
        time.sleep(0.5)
    raise AssertionError(f"{user}'s server did not stop")


def start(hub: Hub, user: str, token: str, options: dict) -> requests.Response:
    return api(hub, "POST", f"/users/{user}/server", token, json={"user_options": options})


def reservation_of(hub: Hub, user: str) -> dict:
    active = pool(hub, "GET", f"/reservations?owner={user}").json()["reservations"]
    assert len(active) == 1, active
    return active[0]


def spawn(hub: Hub, user: str, token: str, options: dict) -> requests.Response:
    """:func:`start`, asserting the hub took the spawn (201 or 202); a failure says why,
    with the hub's response and the tail of its log."""
    r = start(hub, user, token, options)
    assert r.status_code in (201, 202), (
        f"spawn for {user} {options}: {r.status_code} {r.text}\n{hub.log()[-4000:]}"
    )
    return r
