"""Starting, waiting for and stopping users' servers through a test hub's REST API."""

from __future__ import annotations

import json
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


def progress_messages(hub: Hub, user: str, token: str, timeout: float = 300) -> list[str]:
    """The spawn page's messages for ``user``'s spawn under way, to its end (ready or
    failed), read from the hub's progress stream as the page reads it."""
    deadline = time.monotonic() + 30
    while not api(hub, "GET", f"/users/{user}", hub.admin_token).json().get("servers"):
        assert time.monotonic() < deadline, f"{user}'s spawn did not begin"
        time.sleep(0.05)
    messages = []
    with requests.get(
        f"{hub.api}/users/{user}/server/progress",
        headers={"Authorization": f"token {token}"},
        stream=True,
        timeout=timeout,
    ) as r:
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                event = json.loads(line[5:])
                messages.append(event.get("message", ""))
                if event.get("ready") or event.get("failed"):
                    break
    return messages
