"""Every endpoint of the pool API and every page of the pool service, against every kind
of caller, through a real JupyterHub and configurable-http-proxy: one table of intended
status codes. The table must name every path of the OpenAPI document and every page
route, so a new endpoint cannot ship without its row.

Callers: a pool admin (group gpupool-admins), user A (alice), user B (bob), an observer
(group gpupool-observers), the metrics service (GPUPOOL_METRICS_TOKEN), a token with
exactly the scopes the hub gives alice's server (``server_token_scopes``; the real one is
read from a running server in test_dashboard_and_culling.py), a token without any pool
scope, and no token. Another user's object answers 404 exactly like a missing one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import requests

from gpupool.graph.templates import mlp
from gpupool.pool.admin_pages import admin_routes
from gpupool.pool.openapi import openapi_document
from gpupool.pool.pages import page_routes
from tests.support.hub import Hub

pytestmark = pytest.mark.hub

COLS = ("admin", "a", "b", "observer", "metrics", "server", "noscope", "none")
SERVER_SCOPES = ["users:activity!user", "access:servers!server=alice/", "custom:gpupool:use"]


def row(*codes: int) -> dict[str, int]:
    assert len(codes) == len(COLS)
    return dict(zip(COLS, codes, strict=True))


# status codes, in the order of COLS
ALL_200 = row(200, 200, 200, 200, 200, 200, 200, 200)
READ = row(200, 200, 200, 200, 200, 200, 403, 401)  # anyone of the pool
OWN_A = row(200, 200, 404, 200, 200, 200, 403, 401)  # alice's object: B gets 404
OBSERVE = row(200, 403, 403, 200, 200, 403, 403, 401)
ADMIN = row(200, 403, 403, 403, 403, 403, 403, 401)

TRAINING = {"graph": mlp(inputs=64, hidden=8).to_json(), "dataset": "digits", "spec": "cpu-1"}

# (method, path template, body) -> codes; {a} is a reservation of alice's, {b} a fresh one
# of bob's for each caller (so a DELETE or release by one caller leaves the next one's)
API: list[tuple[str, str, Any, dict[str, int]]] = [
    ("GET", "/", None, READ),
    ("GET", "/openapi.json", None, ALL_200),
    ("GET", "/specs", None, READ),
    ("GET", "/specs/a100-40g", None, READ),
    ("GET", "/datasets", None, READ),
    ("GET", "/datasets/digits", None, READ),
    ("GET", "/datasets/nope", None, row(404, 404, 404, 404, 404, 404, 403, 401)),
    ("GET", "/reservations", None, READ),
    # bare reservations are the hub's services' and admins': a user's would hold capacity
    ("POST", "/reservations", {"spec": "cpu-1"}, row(201, 403, 403, 403, 403, 403, 403, 401)),
    ("GET", "/reservations/{a}", None, OWN_A),
    ("DELETE", "/reservations/{b}", None, row(204, 404, 204, 403, 403, 404, 403, 401)),
    ("GET", "/reservations/{a}/metrics", None, OWN_A),
    ("GET", "/reservations/{a}/ssh", None, OWN_A),
    # the server reports its SSH sessions with its own token: the owner only
    (
        "PUT",
        "/reservations/{a}/ssh",
        {"sessions": []},
        row(403, 200, 404, 403, 403, 200, 403, 401),
    ),
    (
        "POST",
        "/reservations/{a}/started",
        {"container_id": "ab" * 32},
        row(204, 403, 404, 403, 403, 403, 403, 401),
    ),
    # the hub's spawner leaves a stop to the pool (its node did not answer): not for users
    (
        "POST",
        "/reservations/{b}/stop",
        {"reason": "stopped by the hub"},
        row(202, 404, 403, 403, 403, 404, 403, 401),
    ),
    ("GET", "/nodes", None, READ),
    ("GET", "/nodes/node-a", None, READ),
    ("POST", "/nodes/node-b/drain", None, ADMIN),
    ("POST", "/nodes/node-b/undrain", None, ADMIN),
    ("GET", "/nodes/node-a/history", None, OBSERVE),
    ("GET", "/health", None, OBSERVE),
    ("GET", "/alerts", None, OBSERVE),
    ("POST", "/reconcile", None, ADMIN),
    ("GET", "/metrics", None, OBSERVE),
    ("GET", "/notices", None, row(200, 200, 200, 200, 403, 200, 403, 401)),
    ("GET", "/notices?all=1", None, OBSERVE),
    ("GET", "/usage", None, READ),
    ("GET", "/usage?user=alice", None, OWN_A),
    ("GET", "/usage?all=1", None, READ),  # users see their own; observers everyone's
    ("GET", "/usage.csv", None, OBSERVE),
    # trainings: {ta} is alice's, {tb} a fresh one of bob's for each caller (all stay queued:
    # this hub watches no engines, so nothing dispatches them)
    ("GET", "/trainings", None, READ),
    ("GET", "/trainings?state=queued", None, READ),
    ("POST", "/trainings", TRAINING, row(201, 201, 201, 201, 403, 201, 403, 401)),
    ("GET", "/trainings/{ta}", None, OWN_A),
    ("GET", "/trainings/{ta}/metrics", None, OWN_A),
    ("GET", "/trainings/{ta}/logs", None, OWN_A),
    ("POST", "/trainings/{tb}/cancel", None, row(202, 404, 202, 403, 403, 404, 403, 401)),
]

# pages log in through the hub: a browser without a login is sent to it (302); a token
# in the Authorization header is taken as well, if it may access the service at all
LOGIN = 302
PAGES: list[tuple[str, str, dict[str, int]]] = [
    ("GET", "", row(200, 200, 200, 200, 200, 200, 200, 200)),  # the service's index
    # the SSH proxy for a laptop: public code, nothing of the site
    ("GET", "gpupool-ssh-proxy", row(200, 200, 200, 200, 200, 200, 200, 200)),
    # pages are for people: services' and servers' tokens may not access the service
    ("GET", "usage", row(200, 200, 200, 200, 403, 403, 403, LOGIN)),
    ("GET", "admin", row(200, 403, 403, 200, 403, 403, 403, LOGIN)),
    ("POST", "admin/nodes/node-b/drain", row(302, 403, 403, 403, 403, 403, 403, 403)),
    ("POST", "admin/nodes/node-b/undrain", row(302, 403, 403, 403, 403, 403, 403, 403)),
    ("POST", "admin/reservations/{b}/release", row(302, 403, 403, 403, 403, 403, 403, 403)),
    ("POST", "admin/servers/bob", row(302, 403, 403, 403, 403, 403, 403, 403)),
]


@pytest.fixture(scope="module")
def tokens(hub: Hub) -> dict[str, str | None]:
    return {
        "admin": hub.user_token("ada", groups=("gpupool-admins",)),
        "a": hub.user_token("alice"),
        "b": hub.user_token("bob"),
        "observer": hub.user_token("otto", groups=("gpupool-observers",)),
        "metrics": hub.metrics_token,
        "server": hub.user_token("alice", scopes=SERVER_SCOPES),
        "noscope": hub.user_token("carol", scopes=["read:users:name!user"]),
        "none": None,
    }


def send(hub: Hub, method: str, url: str, token: str | None, body: Any = None) -> int:
    headers = {"Authorization": f"token {token}"} if token else {}
    r = requests.request(
        method,
        url,
        headers=headers,
        json=body,
        timeout=30,
        allow_redirects=False,
        data=None if body is not None or method == "GET" else b"",
    )
    return r.status_code


def test_every_route_has_a_row() -> None:
    documented = set(openapi_document("/services/gpupool/")["paths"])
    in_table = {
        re.sub(r"\?.*", "", p).replace("{a}", "{id}").replace("{b}", "{id}") for _, p, _, _ in API
    }
    in_table = {p.replace("{ta}", "{id}").replace("{tb}", "{id}") for p in in_table}
    in_table = {re.sub(r"/nodes/node-[ab]", "/nodes/{name}", p) for p in in_table}
    in_table = {p.replace("/specs/a100-40g", "/specs/{slug}") for p in in_table}
    in_table = {re.sub(r"/datasets/[\w-]+", "/datasets/{name}", p) for p in in_table}
    assert documented == in_table, documented ^ in_table
    page_paths = {p for p, _ in page_routes("/s/") + admin_routes("/s/")} - {"/s/oauth_callback"}
    tested = set()
    for _, path, _ in PAGES:
        for pattern in page_paths:
            if re.fullmatch(pattern, "/s/" + path.replace("{b}", "r-x")):
                tested.add(pattern)
    assert tested == page_paths, page_paths - tested


def test_the_matrix(hub: Hub, tokens: dict[str, str | None]) -> None:
    def reserve(owner: str, spec: str = "a100-40g") -> str:
        r = requests.post(
            f"{hub.pool}/reservations",
            headers={"Authorization": f"token {hub.automation_token}"},
            json={"spec": spec, "owner": owner},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def submit(token: str | None) -> str:
        r = requests.post(
            f"{hub.pool}/trainings",
            headers={"Authorization": f"token {token}"},
            json=TRAINING,
            timeout=30,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    made: list[str] = []
    fresh_b: Callable[[], str] = lambda: made.append(reserve("bob", "cpu-1")) or made[-1]  # noqa: E731
    a_training = submit(tokens["a"])
    a_res = reserve("alice")
    made.append(a_res)
    wrong: list[str] = []
    try:
        for method, path, body, want in API:
            for who in COLS:
                p = path.replace("{a}", a_res).replace("{ta}", a_training)
                if "{b}" in p:
                    p = p.replace("{b}", fresh_b())
                if "{tb}" in p:
                    p = p.replace("{tb}", submit(tokens["b"]))
                got = send(hub, method, f"{hub.pool}{p}", tokens[who], body)
                if got != want[who]:
                    wrong.append(f"{method} api{p} as {who}: {got}, intended {want[who]}")
                if method == "POST" and path == "/reservations" and got == 201:
                    pass  # freed below with everything else
        base = f"{hub.url}/services/gpupool/"
        for method, path, want in PAGES:
            for who in COLS:
                p = path.replace("{b}", fresh_b()) if "{b}" in path else path
                got = send(hub, method, base + p, tokens[who])
                if got != want[who]:
                    wrong.append(f"{method} {p or '(index)'} as {who}: {got}, intended {want[who]}")
    finally:
        admin = {"Authorization": f"token {tokens['admin']}"}
        for r in requests.get(f"{hub.pool}/reservations", headers=admin, timeout=30).json()[
            "reservations"
        ]:
            requests.delete(f"{hub.pool}/reservations/{r['id']}", headers=admin, timeout=30)
        requests.post(f"{hub.pool}/nodes/node-b/undrain", headers=admin, timeout=30)
    assert not wrong, "\n".join(wrong)


def test_the_limits_by_caller(hub: Hub, tokens: dict[str, str | None]) -> None:
    """What the hostile-tenant limits answer: a release under a workload (409 for its
    owner and their server's token, 404 for others), a flood of writes (429 with
    Retry-After, for that user only), a body over an endpoint's bound (413)."""
    admin = {"Authorization": f"token {tokens['admin']}"}
    held = requests.post(
        f"{hub.pool}/reservations",
        headers=admin,
        json={"spec": "cpu-1", "owner": "alice", "container": "gpupool-nb-alice"},
        timeout=30,
    ).json()["id"]
    want = row(204, 409, 404, 403, 403, 409, 403, 401)
    wrong = []
    for who in COLS:
        if who == "admin":
            continue
        got = send(hub, "DELETE", f"{hub.pool}/reservations/{held}", tokens[who])
        if got != want[who]:
            wrong.append(f"DELETE a held reservation as {who}: {got}, intended {want[who]}")
    got = send(hub, "DELETE", f"{hub.pool}/reservations/{held}", tokens["admin"])
    assert got == 204, got
    big = {"spec": "cpu-1", "pad": "x" * 70_000}
    for who in ("admin", "a", "observer"):
        got = send(hub, "POST", f"{hub.pool}/reservations", tokens[who], big)
        if got != 413:
            wrong.append(f"POST a 70 kB body as {who}: {got}, intended 413")
    codes = [send(hub, "DELETE", f"{hub.pool}/reservations/r-none", tokens["b"]) for _ in range(30)]
    if 429 not in codes:
        wrong.append(f"30 writes at once by b: {codes}, intended 429 after the burst")
    # others, and pool admins, are not limited (a user whose writes the matrix above has
    # not spent: the bucket is per user, and alice's is nearly spent by then)
    others = {**tokens, "dora": hub.user_token("dora")}
    for who in ("dora", "admin", "metrics"):
        got = send(hub, "DELETE", f"{hub.pool}/reservations/r-none", others[who])
        if got == 429:
            wrong.append(f"a write by {who} during b's flood: 429")
    assert not wrong, "\n".join(wrong)
