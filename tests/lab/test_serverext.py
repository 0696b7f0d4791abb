"""The jupyter-server extension gpupool.lab in a real jupyter-server (pytest-jupyter),
reading a FAKE NVML (no GPU in CI: tests/support/fake_nvml.py) and calling a real pool
service behind a real JupyterHub with a token that has exactly the scopes the hub gives a
server. Run by tests/run.sh in a pytest of its own (pytest-jupyter brings its own event
loop fixtures).

- every handler refuses a request without the server's login;
- status: the slice, the reservation as the pool sees it, the pending notices;
- metrics and the WebSocket: samples that move when the card's readings move;
- the pool proxy: specs, usage, reservations with the server's token (the browser holds none);
- the pool's refusal comes through with its status and message.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from tornado.httpclient import HTTPClientError

from tests.support import fake_nvml
from tests.support.hub import Hub

pytestmark = pytest.mark.hub
SERVER_SCOPES = ["users:activity!user", "access:servers!server=lara/", "custom:gpupool:use"]


@pytest.fixture(scope="module")
def pool_side(hub: Hub) -> Iterator[dict[str, Any]]:
    token = hub.user_token("lara", scopes=SERVER_SCOPES)
    # made as the hub's spawner makes it (users cannot make bare reservations)
    r = requests.post(
        f"{hub.pool}/reservations",
        headers={"Authorization": f"token {hub.automation_token}"},
        json={"spec": "a100-40g", "owner": "lara"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    res = r.json()
    yield {"token": token, "reservation": res}
    requests.delete(
        f"{hub.pool}/reservations/{res['id']}",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )


@pytest.fixture
def jp_server_config(
    pool_side: dict[str, Any], hub: Hub, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> dict:  # type: ignore[no-untyped-def]
    res = pool_side["reservation"]
    world = tmp_path / "world.json"
    gpus = [
        {"uuid": g["uuid"], "memory_total_mib": 81920, "memory_used_mib": 0, "utilization_gpu": 3}
        for g in res["gpus"]
    ]
    world.write_text(json.dumps({"gpus": gpus}))
    env = {
        "GPUPOOL_RESERVATION": res["id"],
        "GPUPOOL_SPEC": res["spec"],
        "GPUPOOL_NODE": res["node"],
        "GPUPOOL_GPUS": json.dumps(res["gpus"]),
        "GPUPOOL_API_URL": hub.pool,
        "JUPYTERHUB_API_TOKEN": pool_side["token"],
        "GPUPOOL_NVML_MODULE": "tests.support.fake_nvml",
        fake_nvml.ENV: str(world),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return {
        "ServerApp": {"jpserver_extensions": {"gpupool.lab": True}},
        "GpuPoolLab": {"interval": 0.2},
    }


def set_gpu0(**readings: int) -> None:
    path = Path(os.environ[fake_nvml.ENV])
    world = json.loads(path.read_text())
    world["gpus"][0].update(readings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(world))
    os.replace(tmp, path)


def body(resp: Any) -> Any:
    return json.loads(resp.body)


async def test_every_handler_needs_the_login(jp_fetch, jp_ws_fetch) -> None:  # type: ignore[no-untyped-def]
    for path in (
        ("status",),
        ("metrics",),
        ("pool", "specs"),
        ("pool", "datasets"),
        ("graph", "templates"),
        ("graph", "schema"),
    ):
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("gpupool", *path, headers={"Authorization": ""})
        assert e.value.code == 403, path
    with pytest.raises(HTTPClientError) as e:
        await jp_ws_fetch("gpupool", "metrics", "ws", headers={"Authorization": ""})
    assert e.value.code == 403


async def test_status_shows_the_slice_and_the_reservation(jp_fetch, pool_side) -> None:  # type: ignore[no-untyped-def]
    res = pool_side["reservation"]
    got = body(await jp_fetch("gpupool", "status"))
    assert got["error"] is None
    assert got["slice"]["spec"] == "a100-40g" and got["slice"]["reservation"] == res["id"]
    assert got["slice"]["gpus"][0]["memory_mib"] == 40 * 1024
    assert got["slice"]["gpus"][0]["sm_percent"] == res["gpus"][0]["sm"]
    assert got["reservation"]["state"] == "active" and got["reservation"]["owner"] == "lara"
    assert got["notices"] == []


async def test_metrics_move_over_the_websocket(jp_fetch, jp_ws_fetch, pool_side) -> None:  # type: ignore[no-untyped-def]
    first = body(await jp_fetch("gpupool", "metrics"))
    (g,) = first["history"][-1]["gpus"]
    assert g["utilization_gpu"] == 3 and g["memory_limit_mib"] == 40 * 1024
    ws = await jp_ws_fetch("gpupool", "metrics", "ws")
    msg = json.loads(await ws.read_message())
    assert msg["type"] == "sample"
    # the card gets busy: the next samples say so
    changed = time.monotonic()
    set_gpu0(utilization_gpu=91, memory_used_mib=5000)
    seen = None
    for _ in range(30):
        s = json.loads(await ws.read_message())["sample"]
        if s["gpus"][0]["utilization_gpu"] == 91:
            seen = time.monotonic() - changed
            break
    ws.close()
    assert seen is not None, "the change never reached the socket"
    assert s["gpus"][0]["memory_used_mib"] == 5000
    print(f"\nmetric change -> WebSocket message: {seen * 1000:.0f} ms at 0.2 s interval")


async def test_pool_proxy_with_the_servers_token(jp_fetch, pool_side) -> None:  # type: ignore[no-untyped-def]
    specs = body(await jp_fetch("gpupool", "pool", "specs"))["specs"]
    assert "a100-40g" in [s["slug"] for s in specs]
    mine = body(await jp_fetch("gpupool", "pool", "reservations"))["reservations"]
    assert [r["id"] for r in mine] == [pool_side["reservation"]["id"]]
    usage = body(await jp_fetch("gpupool", "pool", "usage"))
    assert usage["user"] == "lara"
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("gpupool", "pool", "usage", params={"month": "soon"})
    assert e.value.code == 400


@pytest.fixture
def two_trainings(pool_side: dict[str, Any], hub: Hub) -> dict[str, str]:
    """A queued training of this server's user and one of another user's."""
    from gpupool.graph.templates import mlp

    out = {}
    for who, token in (("mine", pool_side["token"]), ("other", hub.user_token("mo"))):
        r = requests.post(
            f"{hub.pool}/trainings",
            headers={"Authorization": f"token {token}"},
            json={"graph": mlp(inputs=64).to_json(), "dataset": "digits", "spec": "cpu-1"},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        out[who] = r.json()["id"]
    return out


async def test_trainings_listed_and_cancelled_through_the_proxy(
    jp_fetch, two_trainings: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    """What the panel does: list the user's trainings, cancel one (this hub dispatches
    nothing, so it stays queued until cancelled); another user's answers 404."""
    tid = two_trainings["mine"]
    listed = body(await jp_fetch("gpupool", "pool", "trainings"))["trainings"]
    assert tid in [t["id"] for t in listed] and two_trainings["other"] not in str(listed)
    done = body(
        await jp_fetch("gpupool", "pool", "trainings", tid, "cancel", method="POST", body="")
    )
    assert (done["id"], done["state"]) == (tid, "cancelled")
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(
            "gpupool", "pool", "trainings", two_trainings["other"], "cancel", method="POST", body=""
        )
    assert e.value.code == 404


async def test_graph_templates_and_schema(jp_fetch) -> None:  # type: ignore[no-untyped-def]
    from gpupool.graph import load

    templates = body(await jp_fetch("gpupool", "graph", "templates"))
    assert set(templates) == {"mlp", "lenet", "resnet", "transformer"}
    assert load(templates["lenet"]).infer().params == 61706
    schema = body(await jp_fetch("gpupool", "graph", "schema"))
    assert (
        schema["$id"] == "urn:gpupool:graph:1"
        and "Conv2d" in schema["properties"]["nodes"]["items"]["properties"]["type"]["enum"]
    )


async def test_pool_datasets_through_the_proxy(jp_fetch, pool_side) -> None:  # type: ignore[no-untyped-def]
    got = body(await jp_fetch("gpupool", "pool", "datasets"))["datasets"]
    assert got[0] == {
        "name": "digits",
        "description": "8x8 handwritten digits, 10 classes.",
        "format": "numpy",
        "read_only": True,
        "mount": "/datasets/digits",
    }
