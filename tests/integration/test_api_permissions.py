"""The pool API through a real JupyterHub and configurable-http-proxy: who may do what.

Callers: user A, user B, a pool admin (group gpupool-admins), an observer (group
gpupool-observers), the automation token (GPUPOOL_API_TOKEN), a user token without any
gpupool scope, and no token. Another user's reservation answers 404 exactly like one
that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from gpupool.lab.client import PoolApi
from tests.support.contract import check_answer
from tests.support.hub import Hub

pytestmark = pytest.mark.hub


@dataclass
class Callers:
    a: str
    b: str
    admin: str
    observer: str
    power: str
    automation: str
    noscope: str


@pytest.fixture(scope="module")
def who(hub: Hub) -> Callers:
    return Callers(
        a=hub.user_token("alice"),
        b=hub.user_token("bob"),
        admin=hub.user_token("ada", groups=("gpupool-admins",)),
        observer=hub.user_token("otto", groups=("gpupool-observers",)),
        power=hub.user_token("pat", groups=("gpu-power-users",)),
        automation=hub.automation_token,
        noscope=hub.user_token("carol", scopes=["read:users:name!user"]),
    )


def call(hub: Hub, method: str, path: str, token: str | None, **kw) -> requests.Response:  # type: ignore[no-untyped-def]
    """A pool API call; its answer is checked against the OpenAPI document."""
    headers = {"Authorization": f"token {token}"} if token else {}
    r = requests.request(method, f"{hub.pool}{path}", headers=headers, timeout=30, **kw)
    return check_answer(r)


def reserve(hub: Hub, owner: str, **body: object) -> requests.Response:
    """A reservation for ``owner`` as the hub's services make one (users cannot: a bare
    reservation would hold capacity that nothing uses)."""
    return call(hub, "POST", "/reservations", hub.automation_token, json={"owner": owner, **body})


@pytest.fixture
def clean(hub: Hub, who: Callers) -> Iterator[None]:
    yield
    for r in call(hub, "GET", "/reservations", who.admin).json()["reservations"]:
        call(hub, "DELETE", f"/reservations/{r['id']}", who.admin)
    for n in ("node-a", "node-b"):
        call(hub, "POST", f"/nodes/{n}/undrain", who.admin)


def test_no_token_and_no_scope(hub: Hub, who: Callers) -> None:
    for path in ("/", "/specs", "/reservations", "/nodes", "/nodes/node-a", "/reservations/x"):
        r = call(hub, "GET", path, None)
        assert r.status_code == 401, path
        assert "token" in r.json()["message"]
        r = call(hub, "GET", path, who.noscope)
        assert r.status_code == 403, path
        assert "custom:gpupool" in r.json()["message"]
    assert call(hub, "POST", "/reservations", None, json={"spec": "cpu-1"}).status_code == 401
    assert (
        call(hub, "POST", "/reservations", who.noscope, json={"spec": "cpu-1"}).status_code == 403
    )
    assert call(hub, "GET", "/specs", "not-a-real-token").status_code == 403


def test_openapi_is_public_and_valid(hub: Hub) -> None:
    from openapi_spec_validator import validate

    r = requests.get(f"{hub.pool}/openapi.json", timeout=10)
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    assert doc["servers"][0]["url"] == "/services/gpupool/api"


def test_specs_filtered_by_group(hub: Hub, who: Callers) -> None:
    plain = {s["slug"] for s in call(hub, "GET", "/specs", who.a).json()["specs"]}
    assert plain == {"cpu-1", "a100-40g", "a100-1x"}
    power = {s["slug"] for s in call(hub, "GET", "/specs", who.power).json()["specs"]}
    assert power == plain | {"a100-2x"}
    for t in (who.admin, who.observer, who.automation):
        assert {s["slug"] for s in call(hub, "GET", "/specs", t).json()["specs"]} == power
    assert call(hub, "GET", "/specs/a100-2x", who.a).status_code == 404
    assert call(hub, "GET", "/specs/a100-2x", who.power).json()["fits_now"] == 4
    r = reserve(hub, "alice", spec="a100-2x")
    assert r.status_code == 422  # well-formed, but not a spec alice may use
    assert r.json()["allowed"] == ["cpu-1", "a100-40g", "a100-1x"]
    # observers see every spec but use only their own (the form's rule): reserving the
    # group-restricted one for an observer is refused as for anyone outside the group
    r = reserve(hub, "otto", spec="a100-2x")
    assert r.status_code == 422 and r.json()["allowed"] == ["cpu-1", "a100-40g", "a100-1x"]
    held = reserve(hub, "pat", spec="a100-2x")
    assert held.status_code == 201
    assert call(hub, "DELETE", f"/reservations/{held.json()['id']}", who.power).status_code == 204


def test_reservation_visibility_matrix(hub: Hub, who: Callers, clean: None) -> None:
    ra = reserve(hub, "alice", spec="a100-40g", server_name="lab")
    assert ra.status_code == 201, ra.text
    a_id = ra.json()["id"]
    assert ra.json()["owner"] == "alice" and ra.headers["Location"].endswith(a_id)
    rb = reserve(hub, "bob", spec="cpu-1")
    assert rb.status_code == 201
    b_id = rb.json()["id"]

    # list: own only for users; everything for admin, observer, automation
    assert [r["id"] for r in call(hub, "GET", "/reservations", who.a).json()["reservations"]] == [
        a_id
    ]
    assert [r["id"] for r in call(hub, "GET", "/reservations", who.b).json()["reservations"]] == [
        b_id
    ]
    for t in (who.admin, who.observer, who.automation):
        ids = {r["id"] for r in call(hub, "GET", "/reservations", t).json()["reservations"]}
        assert ids == {a_id, b_id}
    assert call(hub, "GET", "/reservations?owner=bob", who.a).status_code == 404
    assert [
        r["id"]
        for r in call(hub, "GET", "/reservations?owner=bob", who.observer).json()["reservations"]
    ] == [b_id]

    # get: another user's reservation is indistinguishable from a missing one
    missing = call(hub, "GET", "/reservations/r-missing", who.a)
    foreign = call(hub, "GET", f"/reservations/{b_id}", who.a)
    assert missing.status_code == foreign.status_code == 404
    assert missing.json().keys() == foreign.json().keys()
    for t in (who.a, who.admin, who.observer, who.automation):
        assert call(hub, "GET", f"/reservations/{a_id}", t).status_code == 200

    # delete: not by another user (404), not by an observer (403); idempotent for the owner
    assert call(hub, "DELETE", f"/reservations/{a_id}", who.b).status_code == 404
    assert call(hub, "DELETE", f"/reservations/{a_id}", who.observer).status_code == 403
    assert call(hub, "GET", f"/reservations/{a_id}", who.a).json()["state"] == "active"
    assert call(hub, "DELETE", f"/reservations/{a_id}", who.a).status_code == 204
    assert call(hub, "DELETE", f"/reservations/{a_id}", who.a).status_code == 204
    gone = call(hub, "GET", f"/reservations/{a_id}", who.a)
    # released: gone by id (404), saying when and why; the lab's client reads that
    assert gone.status_code == 404
    assert gone.json()["state"] == "released"
    assert gone.json()["release_reason"] == "released by alice"
    assert PoolApi(hub.pool, who.a).reservation(a_id)["state"] == "released"
    everything = call(hub, "GET", "/reservations?state=all", who.a).json()["reservations"]
    assert a_id in {x["id"] for x in everything}
    assert call(hub, "DELETE", f"/reservations/{b_id}", who.automation).status_code == 204
    assert call(hub, "DELETE", "/reservations/r-missing", who.admin).status_code == 404

    # one that holds a server (it names its container) is not the user's to free: stopping
    # the server frees it; an admin's release stops the workload first
    rs = reserve(hub, "alice", spec="a100-40g", container="gpupool-nb-alice").json()
    r = call(hub, "DELETE", f"/reservations/{rs['id']}", who.a)
    assert r.status_code == 409 and r.json()["reason"] == "workload-running", r.text
    assert "stop the server" in r.json()["message"]
    assert call(hub, "GET", f"/reservations/{rs['id']}", who.a).json()["state"] == "active"
    assert call(hub, "DELETE", f"/reservations/{rs['id']}", who.admin).status_code == 204


def test_acting_for_others_needs_admin(hub: Hub, who: Callers, clean: None) -> None:
    for t in (who.a, who.observer, who.power):  # bare reservations are the services' own
        r = call(hub, "POST", "/reservations", t, json={"spec": "cpu-1"})
        assert r.status_code == 403 and "start a server" in r.json()["message"]
    r = call(hub, "POST", "/reservations", who.a, json={"spec": "cpu-1", "owner": "bob"})
    assert r.status_code == 403
    r = call(hub, "POST", "/reservations", who.observer, json={"spec": "cpu-1", "owner": "bob"})
    assert r.status_code == 403
    assert (
        call(hub, "POST", "/reservations", who.a, json={"spec": "cpu-1", "id": "mine"}).status_code
        == 403
    )
    for t in (who.admin, who.automation):
        r = call(
            hub,
            "POST",
            "/reservations",
            t,
            json={"spec": "cpu-1", "owner": "bob", "kind": "training"},
        )
        assert (
            r.status_code == 201 and r.json()["owner"] == "bob" and r.json()["kind"] == "training"
        )
    r = call(hub, "POST", "/reservations", who.admin, json={"spec": "cpu-1", "id": "fixed-1"})
    assert r.status_code == 201 and r.json()["id"] == "fixed-1"
    assert (
        call(
            hub, "POST", "/reservations", who.admin, json={"spec": "cpu-1", "id": "fixed-1"}
        ).status_code
        == 409
    )
    bob = {x["owner"] for x in call(hub, "GET", "/reservations", who.b).json()["reservations"]}
    assert bob == {"bob"}


@pytest.mark.parametrize(
    "body, status, needle",
    [
        (
            {"spec": "cpu-1", "gpus": 8},
            400,
            "unknown field(s) gpus; allowed: container, id, kind, owner, server_name, spec",
        ),
        ({}, 400, "spec is required; allowed: cpu-1, a100-40g, a100-1x"),
        # what the document allows but the catalog does not offer: 422
        ({"spec": "h100"}, 422, "'h100' is not a spec you may use"),
        (
            {"spec": "cpu-1", "kind": "mining"},
            400,
            "kind 'mining' is not allowed; allowed: notebook, training, manual",
        ),
        ({"spec": "cpu-1", "server_name": 5}, 400, "server_name must be a string"),
        ({"spec": "cpu-1", "id": None}, 400, "id: null is not allowed"),
    ],
)
def test_bad_requests_name_what_is_allowed(
    hub: Hub, who: Callers, body: dict, status: int, needle: str, clean: None
) -> None:
    before = call(hub, "GET", "/reservations", who.admin).json()["reservations"]
    r = reserve(hub, "alice", **body)
    assert r.status_code == status
    assert needle in r.json()["message"]
    assert call(hub, "GET", "/reservations", who.admin).json()["reservations"] == before


def test_not_json(hub: Hub, who: Callers) -> None:
    r = call(hub, "POST", "/reservations", who.automation, data="spec=cpu-1")
    assert r.status_code == 400 and "not JSON" in r.json()["message"]


def test_nodes_and_drain(hub: Hub, who: Callers, clean: None) -> None:
    nodes = call(hub, "GET", "/nodes", who.a).json()["nodes"]
    assert [n["name"] for n in nodes] == ["node-a", "node-b"]
    assert all(n["state"] == "up" and len(n["gpus"]) == 4 for n in nodes)
    assert call(hub, "GET", "/nodes/node-z", who.a).status_code == 404
    for t in (who.a, who.observer, who.noscope):
        assert call(hub, "POST", "/nodes/node-a/drain", t).status_code == 403
    assert call(hub, "GET", "/nodes/node-a", who.a).json()["state"] == "up"
    assert call(hub, "POST", "/nodes/node-z/drain", who.admin).status_code == 404
    r = call(hub, "POST", "/nodes/node-a/drain", who.admin)
    assert r.status_code == 200 and r.json()["state"] == "draining"
    # a drained node gets no new work
    placed = reserve(hub, "alice", spec="a100-1x").json()
    assert placed["node"] == "node-b"
    fits = call(hub, "GET", "/specs/a100-1x", who.a).json()["fits_now"]
    assert fits == 3  # node-b's remaining cards only
    r = call(hub, "POST", "/nodes/node-a/undrain", who.automation)
    assert r.status_code == 200 and r.json()["state"] == "up"
    assert call(hub, "GET", "/specs/a100-1x", who.a).json()["fits_now"] == 7


def test_capacity_answer_explains_per_node(hub: Hub, who: Callers, clean: None) -> None:
    held = []
    for _ in range(4):
        r = reserve(hub, "pat", spec="a100-2x")
        assert r.status_code == 201
        held.append(r.json())
    assert {tuple(sorted(g["index"] for g in h["gpus"])) for h in held} == {(0, 1), (2, 3)}
    assert sorted(h["node"] for h in held) == ["node-a", "node-a", "node-b", "node-b"]
    r = reserve(hub, "alice", spec="a100-40g")
    assert r.status_code == 503
    body = r.json()
    assert body["reason"] == "capacity"
    assert body["message"].startswith("no node has a free A100 with 40 GiB and 50 % SM")
    assert {n["node"] for n in body["nodes"]} == {"node-a", "node-b"}
    assert all("held whole" in n["why"] for n in body["nodes"])


def test_health_endpoints_by_role(hub: Hub, who: Callers, clean: None) -> None:
    """Observers and the metrics service read health; admins reconcile; users see only the
    metrics of their own reservations (another user's: 404, as for none)."""
    metrics = hub.metrics_token
    for token in (who.observer, who.admin, metrics):
        assert call(hub, "GET", "/alerts", token).json()["alerts"] == []
        nodes = call(hub, "GET", "/health", token).json()["nodes"]
        assert [n["name"] for n in nodes] == ["node-a", "node-b"]
        r = call(hub, "GET", "/metrics", token)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert 'gpupool_gpus{node="node-a",modelName="NVIDIA A100-SXM4-80GB"} 4' in r.text
        assert call(hub, "GET", "/nodes/node-a/history", token).status_code == 200
    for path in ("/alerts", "/health", "/metrics", "/nodes/node-a/history"):
        r = call(hub, "GET", path, who.a)
        assert r.status_code == 403 and "custom:gpupool:observe" in r.json()["message"], path
    for token in (who.a, who.observer, metrics):
        r = call(hub, "POST", "/reconcile", token)
        assert r.status_code == 403 and "custom:gpupool:admin" in r.json()["message"]
    assert call(hub, "POST", "/reconcile?node=nope", who.admin).status_code == 404
    # the metrics service may not reserve (least privilege: observe only)
    r = call(hub, "POST", "/reservations", metrics, json={"spec": "cpu-1"})
    assert r.status_code == 403
    # a reservation's metrics: its owner and observers; another user gets 404
    rid = reserve(hub, "alice", spec="a100-40g").json()["id"]
    got = call(hub, "GET", f"/reservations/{rid}/metrics", who.a).json()
    assert got["reservation"] == rid and got["samples"] == []
    assert call(hub, "GET", f"/reservations/{rid}/metrics", who.observer).status_code == 200
    missing = call(hub, "GET", "/reservations/r-none/metrics", who.b)
    other = call(hub, "GET", f"/reservations/{rid}/metrics", who.b)
    assert other.status_code == missing.status_code == 404
    assert other.json()["message"].replace(rid, "X") == missing.json()["message"].replace(
        "r-none", "X"
    )
    # only the spawner and admins report a container as started
    body = {"container_id": "ab" * 32}
    assert call(hub, "POST", f"/reservations/{rid}/started", who.a, json=body).status_code == 403
    assert call(hub, "POST", f"/reservations/{rid}/started", who.b, json=body).status_code == 404
    r = call(hub, "POST", f"/reservations/{rid}/started", who.admin, json={"container_id": "x"})
    assert r.status_code == 400 and "hex" in r.json()["message"]
    assert (
        call(hub, "POST", f"/reservations/{rid}/started", who.admin, json=body).status_code == 204
    )


def test_quota_through_the_api_and_usage_by_role(hub: Hub, who: Callers, clean: None) -> None:
    lim = hub.user_token("lim", groups=("gpu-limited",))
    first = reserve(hub, "lim", spec="a100-1x")
    assert first.status_code == 201, first.text
    again = reserve(hub, "lim", spec="a100-40g")
    assert again.status_code == 403 and again.json()["reason"] == "quota"
    assert "quota of group gpu-limited: at most 1 GPU(s) at a time" in again.json()["message"]
    # an admin reserving for lim is held to lim's quota too
    r = call(hub, "POST", "/reservations", who.admin, json={"spec": "a100-40g", "owner": "lim"})
    assert r.status_code == 403 and r.json()["reason"] == "quota"
    usage = call(hub, "GET", "/usage", lim).json()
    assert usage["user"] == "lim" and usage["quota"]["source"] == "group gpu-limited"
    assert usage["quota"]["gpus"] == {"limit": 1, "held": 1, "left": 0}
    assert call(hub, "DELETE", f"/reservations/{first.json()['id']}", lim).status_code == 204
    assert reserve(hub, "lim", spec="a100-40g").status_code == 201
    usage = call(hub, "GET", "/usage", lim).json()
    assert [row["spec"] for row in usage["by_spec"]] == ["a100-1x", "a100-40g"]
    assert usage["total"]["cost"] >= 0 and usage["quota"]["gpus"]["left"] == 0

    # who sees whose usage
    assert call(hub, "GET", "/usage?user=lim", who.a).status_code == 404
    assert call(hub, "GET", "/usage?user=nobody-at-all", who.a).status_code == 404
    assert call(hub, "GET", "/usage?user=lim", who.observer).json()["user"] == "lim"
    everyone = call(hub, "GET", "/usage?all=1", who.observer).json()
    assert "lim" in [u["user"] for u in everyone["users"]]
    (limited,) = [g for g in everyone["groups"] if g["group"] == "gpu-limited"]
    lim_total = next(u for u in everyone["users"] if u["user"] == "lim")
    assert limited["users"] == ["lim"]
    assert (limited["gpu_hours"], limited["cost"]) == (lim_total["gpu_hours"], lim_total["cost"])
    assert call(hub, "GET", "/usage?all=1", who.a).json()["user"] == "alice"  # own only
    bad = call(hub, "GET", "/usage?month=nov", who.a)
    assert bad.status_code == 400 and "YYYY-MM" in bad.json()["message"]
    assert call(hub, "GET", "/usage.csv", who.a).status_code == 403
    csv_text = call(hub, "GET", "/usage.csv", who.observer).text
    lines = csv_text.strip().splitlines()
    assert lines[0] == "month,user,spec,hours,gpu_hours,cost"
    assert any(",lim,a100-40g," in line for line in lines[1:])
    groups_csv = call(hub, "GET", "/usage.csv?by=group", who.observer).text.strip().splitlines()
    assert groups_csv[0] == "month,group,users,hours,gpu_hours,cost"
    assert any(",gpu-limited,lim," in line for line in groups_csv[1:]), groups_csv
    bad = call(hub, "GET", "/usage.csv?by=team", who.observer)
    assert bad.status_code == 400 and "use user or group" in bad.json()["message"]


def test_ssh_sessions_are_reported_by_the_owner_only(hub: Hub, who: Callers, clean: None) -> None:
    """PUT api/reservations/{id}/ssh, as a server's lab extension sends it: the owner's
    report is kept and shown to the owner, observers and the dashboard; bob cannot see or
    feed alice's (404), admins and observers cannot report for her (403); a malformed or
    flooding report is refused naming the field and leaves the last one as it was."""
    mine = reserve(hub, "alice", spec="cpu-1", server_name="").json()
    path = f"/reservations/{mine['id']}/ssh"
    empty = call(hub, "GET", path, who.a).json()
    assert empty["sessions"] == [] and empty["reported_at"] is None
    one = {"id": "0a1b2c3d4e5f", "from": "203.0.113.9", "open_s": 600, "idle_s": 12}
    got = call(hub, "PUT", path, who.a, json={"sessions": [one]})
    assert got.status_code == 200, got.text
    (s,) = got.json()["sessions"]
    assert s["from"] == "203.0.113.9" and s["last_activity"] == got.json()["last_activity"]
    for caller in (who.a, who.observer, who.admin):
        assert call(hub, "GET", path, caller).json()["sessions"] == [s]
    assert call(hub, "GET", path, who.b).status_code == 404
    assert call(hub, "PUT", path, who.b, json={"sessions": []}).status_code == 404
    for caller in (who.observer, who.admin):
        r = call(hub, "PUT", path, caller, json={"sessions": []})
        assert r.status_code == 403 and "owner" in r.json()["message"]
    bad = [
        ({"sessions": [{**one, "id": "../../x"}]}, "sessions/0/id"),
        ({"sessions": [{**one, "open_s": -1}]}, "sessions/0/open_s"),
        ({"sessions": [{**one, "from": "x\n" * 10}]}, "sessions/0/from"),
        ({"sessions": [{**one, "shell": "bash"}]}, "sessions/0"),
        ({"sessions": [one, one]}, "appears twice"),
        ({"sessions": [{**one, "id": f"{i:04x}"} for i in range(33)]}, "sessions"),
        ({"sesions": []}, "the body"),
    ]
    for body, named in bad:
        r = call(hub, "PUT", path, who.a, json=body)
        assert r.status_code == 400 and named in r.json()["message"], (body, r.text)
    for raw in ('{"sessions":[{"id":"abcd","open_s":5,"idle_s":NaN}]}',
                '{"sessions":[{"id":"abcd","open_s":Infinity}]}'):  # fmt: skip
        # Python's JSON reader takes these; NaN compares false with every bound
        r = call(hub, "PUT", path, who.a, data=raw)
        assert r.status_code == 400 and "finite number" in r.json()["message"], r.text
    assert call(hub, "GET", path, who.a).json()["sessions"] == [s]  # unchanged
    # the dashboard lists them with the reservation
    page = requests.get(
        f"{hub.pool.rsplit('/api', 1)[0]}/admin",
        headers={"Authorization": f"token {who.observer}"},
        timeout=30,
    )
    assert page.ok and "1 SSH session · active 0 min ago" in page.text, page.text[-2000:]
    # a training's reservation has no SSH sessions to report
    job = call(
        hub, "POST", "/reservations", hub.automation_token,
        json={"spec": "cpu-1", "owner": "alice", "kind": "training"},
    ).json()  # fmt: skip
    r = call(hub, "PUT", f"/reservations/{job['id']}/ssh", who.a, json={"sessions": []})
    assert r.status_code == 409 and "training" in r.json()["message"]
    # a flood of reports is limited for the one who floods, apart from everyone else
    theirs = reserve(hub, "bob", spec="cpu-1", server_name="").json()
    codes = [call(hub, "PUT", path, who.a, json={"sessions": []}).status_code for _ in range(25)]
    assert codes[0] == 200 and 429 in codes, codes
    got = call(hub, "PUT", f"/reservations/{theirs['id']}/ssh", who.b, json={"sessions": [one]})
    assert got.status_code == 200, got.text
