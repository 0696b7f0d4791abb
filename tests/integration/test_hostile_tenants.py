"""Hostile tenants against the real hub, proxy, pool service and a real Docker engine:
each test is an attack a semi-trusted user can make, and shows that only that user is
affected (issue 17). Trainings' hostile output: test_hostile_trainings.py.

No GPU in CI: the node declares GPUs and runs with no GPU runtime (see test_spawner.py).
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator

import pytest
import requests
import yaml

from gpupool.container import (
    home_volume,
    legacy_home_volume,
    legacy_safe_name,
    server_container_name,
)
from tests.support.catalogs import SPECS, write_engine_catalog
from tests.support.docker import Engine, ensure_docker_installed, start_engines, stop_engines
from tests.support.hub import Hub
from tests.support.images import ensure_image
from tests.support.servers import api, pool, reservation_of, spawn, start, wait_ready, wait_stopped

pytestmark = [pytest.mark.docker, pytest.mark.hub]
IMAGE = "gpupool/singleuser:latest"


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    ensure_docker_installed()
    engs = start_engines(["node-h"])
    try:
        ensure_image(engs.values())
        yield engs["node-h"]
    finally:
        stop_engines(engs)


@pytest.fixture(scope="module")
def hub(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    specs = [
        *SPECS,
        {"slug": "cpu-1", "display_name": "CPU", "gpus": 0, "cpu": 1, "memory": "1GiB"},
    ]
    catalog = write_engine_catalog(
        tmp_path_factory.mktemp("catalog"), {"node-h": engine}, specs=specs
    )
    (catalog / "pool.yaml").write_text(
        yaml.safe_dump({"quotas": {"users": {"frank": {"cpu": 0.5}, "gina": {"reservations": 0}}}})
    )
    h = Hub(catalog).start()
    try:
        yield h
    finally:
        h.cleanup()


def run_in(engine: Engine, container: str, script: str) -> str:
    out = engine.client().containers.get(container).exec_run(["sh", "-c", script])
    return out.output.decode(errors="replace")


def put_file(engine: Engine, volume: str, owner: str, name: str, text: str) -> None:
    """A home volume as the rule before 2026-12 made it, with one file in it."""
    client = engine.client()
    client.volumes.create(volume, labels={"io.gpupool.owner": owner})
    # mounted where the spawner mounted it, so that Docker gives it the image's home (owner)
    home = "/home/jovyan"
    c = client.containers.create(IMAGE, ["true"], volumes={volume: {"bind": home, "mode": "rw"}})
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid = len(data), 1000, 100
            tar.addfile(info, io.BytesIO(data))
        c.put_archive(home, buf.getvalue())
    finally:
        c.remove(force=True)


def stop(hub: Hub, user: str, token: str) -> None:
    api(hub, "DELETE", f"/users/{user}/server", token)
    wait_stopped(hub, user)


def refusal(hub: Hub, user: str, token: str, options: dict) -> str:
    """Start ``user``'s server expecting a refusal; the message the user is shown."""
    r = start(hub, user, token, options)
    if r.status_code >= 400:
        return r.json()["message"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # slow refusals end the spawn; progress says why
        model = api(hub, "GET", f"/users/{user}", hub.admin_token).json()
        if not model.get("servers"):
            break
        time.sleep(0.5)
    return hub.log()


def test_a_user_named_like_anothers_hashed_name_gets_their_own_home(
    hub: Hub, engine: Engine
) -> None:
    """'ada.lovelace' and a user literally named 'ada-lovelace-d239a0a8' got one volume and
    one container name: the second's spawn removed the first's server and mounted her home."""
    victim, squatter = "ada.lovelace", legacy_safe_name("ada.lovelace")
    tv, ts = hub.user_token(victim), hub.user_token(squatter)
    spawn(hub, victim, tv, {"spec": "a100-40g", "image": "lab"})
    wait_ready(hub, victim, tv)
    mine = reservation_of(hub, victim)["container"]
    run_in(engine, mine, "echo secret-of-ada > ~/notes.txt")
    spawn(hub, squatter, ts, {"spec": "a100-40g", "image": "lab"})
    wait_ready(hub, squatter, ts)
    theirs = reservation_of(hub, squatter)["container"]
    assert theirs != mine
    assert "secret-of-ada" not in run_in(engine, theirs, "cat ~/notes.txt; ls -la ~")
    # the victim's server was not touched
    assert engine.client().containers.get(mine).status == "running"
    assert "secret-of-ada" in run_in(engine, mine, "cat ~/notes.txt")
    mounts = {
        c.name: {m.get("Name") for m in c.attrs["Mounts"]}
        for c in engine.client().containers.list()
    }
    assert home_volume(victim) in mounts[mine] and home_volume(squatter) in mounts[theirs]
    assert home_volume(victim) != home_volume(squatter)
    stop(hub, victim, tv)
    stop(hub, squatter, ts)


def test_a_home_of_the_old_naming_rule_keeps_its_files_and_is_never_anothers(
    hub: Hub, engine: Engine
) -> None:
    """Upgrade: the volume today's rule made for 'grace.hopper' is adopted for her (files
    kept); 'grace-hopper-<hash>', whose new name is that volume's name, is refused."""
    owner = "grace.hopper"
    legacy = legacy_home_volume(owner)
    assert legacy != home_volume(owner)
    put_file(engine, legacy, owner, "thesis.txt", "cobol-notes")
    token = hub.user_token(owner)
    spawn(hub, owner, token, {"spec": "a100-40g", "image": "lab"})
    wait_ready(hub, owner, token)
    assert run_in(engine, reservation_of(hub, owner)["container"], "cat ~/thesis.txt") == (
        "cobol-notes"
    )
    stop(hub, owner, token)
    names = {v.name for v in engine.client().volumes.list()}
    assert home_volume(owner) not in names  # adopted, not replaced by an empty one

    squatter = legacy_safe_name(owner)
    assert home_volume(squatter) == legacy
    ts = hub.user_token(squatter)
    msg = refusal(hub, squatter, ts, {"spec": "a100-40g", "image": "lab"})
    assert f"the volume {legacy}" in msg and "labelled for 'grace.hopper'" in msg, msg
    assert not [
        c
        for c in engine.client().containers.list(all=True)
        if any(m.get("Name") == legacy for m in c.attrs["Mounts"])
    ]
    assert pool(hub, "GET", f"/reservations?owner={squatter}").json()["reservations"] == []


def test_a_container_at_my_name_that_is_someone_elses_is_never_removed(
    hub: Hub, engine: Engine
) -> None:
    """A spawn used to remove whatever container had its name, by name."""
    user = "carol"
    name = server_container_name(user, "")
    client = engine.client()
    other = client.containers.run(
        IMAGE, ["sleep", "600"], name=name, labels={"io.gpupool.owner": "mallory"}, detach=True
    )
    try:
        token = hub.user_token(user)
        msg = refusal(hub, user, token, {"spec": "a100-40g", "image": "lab"})
        assert f"the container {name}" in msg and "labelled for 'mallory'" in msg, msg
        assert client.containers.get(other.id).status == "running"
        assert pool(hub, "GET", f"/reservations?owner={user}").json()["reservations"] == []
    finally:
        other.remove(force=True)
    # with the squatter gone, carol starts
    token = hub.user_token(user)
    spawn(hub, user, token, {"spec": "a100-40g", "image": "lab"})
    wait_ready(hub, user, token)
    stop(hub, user, token)


def call(hub: Hub, method: str, path: str, token: str, **kw) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.request(
        method, f"{hub.pool}{path}", headers={"Authorization": f"token {token}"}, timeout=60, **kw
    )


def fits(hub: Hub, token: str, spec: str) -> int:
    return call(hub, "GET", f"/specs/{spec}", token).json()["fits_now"]


def test_a_user_cannot_release_a_reservation_under_a_running_server(
    hub: Hub, engine: Engine
) -> None:
    """DELETE api/reservations/<id> with the user's or the server's own token answered 204
    and offered the slice again while the container ran on."""
    user = "dave"
    token = hub.user_token(user)
    spawn(hub, user, token, {"spec": "a100-40g", "image": "lab"})
    wait_ready(hub, user, token)
    res = reservation_of(hub, user)
    free_before = fits(hub, token, "a100-40g")
    env = engine.client().containers.get(res["container"]).attrs["Config"]["Env"]
    server_token = next(e.split("=", 1)[1] for e in env if e.startswith("JUPYTERHUB_API_TOKEN="))
    for t in (token, server_token):
        r = call(hub, "DELETE", f"/reservations/{res['id']}", t)
        assert r.status_code == 409, r.text
        assert "stop the server" in r.json()["message"] and r.json()["reason"] == "workload-running"
    assert reservation_of(hub, user)["state"] == "active"
    assert fits(hub, token, "a100-40g") == free_before
    assert engine.client().containers.get(res["container"]).status == "running"
    # the admin's cancel stops the server first; the reservation goes with it
    r = pool(hub, "DELETE", f"/reservations/{res['id']}")
    assert r.status_code in (202, 204), r.text
    wait_stopped(hub, user)
    deadline = time.monotonic() + 30
    while pool(hub, "GET", f"/reservations?owner={user}").json()["reservations"]:
        assert time.monotonic() < deadline, "the reservation outlived its server"
        time.sleep(0.5)
    assert res["container"] not in {c.name for c in engine.client().containers.list(all=True)}


def test_a_user_cannot_hold_capacity_with_bare_reservations(hub: Hub) -> None:
    """POST api/reservations with a user token held a slice for start_grace (15 min), as
    often as the user liked."""
    token = hub.user_token("erin")
    before = fits(hub, token, "a100-40g")
    r = call(hub, "POST", "/reservations", token, json={"spec": "a100-40g"})
    assert r.status_code == 403, r.text
    assert "start a server from the hub" in r.json()["message"]
    assert fits(hub, token, "a100-40g") == before
    assert pool(hub, "GET", "/reservations?owner=erin").json()["reservations"] == []


def test_cpu_only_specs_count_against_quotas(hub: Hub) -> None:
    """A CPU-only spec was counted by no quota."""
    token = hub.user_token("frank")
    msg = refusal(hub, "frank", token, {"spec": "cpu-1", "image": "lab"})
    assert "at most 0.5 CPU at a time" in msg and "CPU needs 1" in msg, msg
    token = hub.user_token("gina")
    msg = refusal(hub, "gina", token, {"spec": "cpu-1", "image": "lab"})
    assert "at most 0 servers and trainings at a time" in msg, msg
    for u in ("frank", "gina"):
        assert pool(hub, "GET", f"/reservations?owner={u}").json()["reservations"] == []


def test_a_flood_of_writes_is_refused_for_that_user_only(hub: Hub) -> None:
    """No rate limit: one user's loop of writes took the pool service's time from all."""
    flooder, other = hub.user_token("henry"), hub.user_token("iris")
    codes = [call(hub, "DELETE", "/reservations/r-none", flooder).status_code for _ in range(40)]
    assert codes[0] == 404 and 429 in codes, codes
    r = call(hub, "DELETE", "/reservations/r-none", flooder)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1, r.headers
    assert "at most 60 per minute" in r.json()["message"]
    assert call(hub, "DELETE", "/reservations/r-none", other).status_code == 404
    assert call(hub, "GET", "/specs", flooder).status_code == 200  # reads are not limited


def test_request_bodies_are_bounded(hub: Hub) -> None:
    token = hub.user_token("jack")
    r = call(hub, "POST", "/trainings", token, data=b"{" + b" " * (5 * 1024 * 1024) + b"}")
    assert r.status_code == 413 and "at most" in r.json()["message"], r.text[:300]
    big = b"x" * (9 * 1024 * 1024)  # past what the service's HTTP server reads at all
    try:
        r = call(hub, "POST", "/trainings", token, data=big)
        # refused by the service (400) or, as it closes the connection, by the proxy (503)
        assert r.status_code in (400, 413, 503), r.status_code
    except requests.ConnectionError:
        pass  # the server closed the connection without reading it: also bounded
    assert call(hub, "GET", "/specs", token).status_code == 200
