"""The trainings API through a real JupyterHub and configurable-http-proxy, on the test
catalog whose nodes have no engines (nothing is dispatched here; tests/integration/
test_trainings.py runs trainings on real engines): bad input answers 400 naming the field
and what is allowed, a spec the quota never allows 403, another user's training 404,
cancel while queued, and the bounds on what one user sends (a full queue, pages, sizes)."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from gpupool.graph.templates import mlp
from tests.conftest import CATALOG
from tests.support.contract import check_answer
from tests.support.hub import Hub

pytestmark = pytest.mark.hub
GRAPH = mlp(inputs=64, hidden=16, classes=10).to_json()
QUEUED = 3  # trainings of one user that may wait at once, in this module's catalog


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The test catalog (nodes without engines: nothing is dispatched) with a small queue
    per user."""
    d = Path(tmp_path_factory.mktemp("catalog")) / "catalog"
    shutil.copytree(CATALOG, d)
    pool = yaml.safe_load((d / "pool.yaml").read_text())
    pool["trainings"] = {"per_user_queued": QUEUED}
    (d / "pool.yaml").write_text(yaml.safe_dump(pool))
    h = Hub(d, watch_nodes=False).start()
    try:
        yield h
    finally:
        h.cleanup()


def call(hub: Hub, token: str, method: str, path: str, body: Any = None) -> requests.Response:
    """A pool API call; its answer is checked against the OpenAPI document."""
    r = requests.request(
        method,
        f"{hub.pool}{path}",
        headers={"Authorization": f"token {token}"},
        json=body,
        timeout=30,
    )
    return check_answer(r)


def good(**kw: Any) -> dict[str, Any]:
    return {"graph": GRAPH, "dataset": "digits", "spec": "cpu-1", **kw}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (
            good(
                graph={
                    **GRAPH,
                    "nodes": [*GRAPH["nodes"][:-1], {**GRAPH["nodes"][-1], "type": "Nope"}],
                }
            ),
            422,
            "unknown layer 'Nope'",
        ),
        (
            good(dataset="imagenet"),
            422,
            "dataset 'imagenet' is not in the catalog; allowed: digits",
        ),
        (good(spec="h100"), 422, "spec 'h100' is not a spec you may use; allowed: cpu-1, a100-40g"),
        (good(spec="a100-2x"), 422, "'a100-2x' is not a spec you may use"),
        (good(priority=3), 422, "priority: an integer from -10 to 0, got 3"),
        (good(hyperparameters={"epochs": -1}), 422, "hyperparameters.epochs: must be an integer"),
        (good(env={"LD_PRELOAD": "/x.so"}), 400, "unknown field(s) env"),
        (good(image="lab"), 422, "image 'lab' cannot run trainings on cpu-1; allowed: trainer"),
        ({"spec": "cpu-1"}, 400, "send either graph"),
        (good(command=None), 400, "command: null is not allowed"),
    ],
)
def test_bad_requests_say_what_is_wrong(hub: Hub, body: dict, status: int, words: str) -> None:
    r = call(hub, hub.user_token("alice"), "POST", "/trainings", body)
    assert r.status_code == status, r.text
    assert words in r.json()["message"]


def test_a_malformed_graph_names_the_layer_and_its_error(hub: Hub) -> None:
    bad = copy.deepcopy(GRAPH)
    next(n for n in bad["nodes"] if n["id"] == "fc1")["params"]["out_features"] = "many"
    r = call(hub, hub.user_token("alice"), "POST", "/trainings", good(graph=bad))
    assert r.status_code == 422  # well-formed for the document, refused on its content
    msg = r.json()["message"]
    assert msg.startswith("graph: ") and "fc1" in msg and "out_features" in msg


def test_a_spec_the_quota_never_allows_is_403(hub: Hub) -> None:
    token = hub.user_token("quinn", groups=("gpu-power-users", "gpu-limited"))
    r = call(hub, token, "POST", "/trainings", good(spec="a100-2x"))
    assert r.status_code == 403 and r.json()["reason"] == "quota"
    assert "at most 1 GPU(s) at a time" in r.json()["message"]
    assert call(hub, token, "GET", "/trainings").json()["trainings"] == []  # nothing queued


def test_queued_cancel_and_others_get_404(hub: Hub) -> None:
    alice, bob = hub.user_token("alice"), hub.user_token("bob")
    r = call(hub, alice, "POST", "/trainings", good(name="first try", priority=-2))
    assert r.status_code == 201, r.text
    t = r.json()
    assert r.headers["Location"] == f"trainings/{t['id']}"
    assert (t["state"], t["name"], t["priority"], t["attempt"]) == ("queued", "first try", -2, 0)
    assert t["hyperparameters"]["epochs"] == 10 and t["output"] == f"~/trainings/{t['id']}/"
    for path in ("", "/metrics", "/logs"):
        assert call(hub, bob, "GET", f"/trainings/{t['id']}{path}").status_code == 404
    assert call(hub, bob, "POST", f"/trainings/{t['id']}/cancel").status_code == 404
    assert call(hub, bob, "GET", "/trainings?owner=alice").status_code == 404
    assert t["id"] not in {x["id"] for x in call(hub, bob, "GET", "/trainings").json()["trainings"]}
    mine = call(hub, alice, "GET", "/trainings?state=queued").json()["trainings"]
    assert t["id"] in {x["id"] for x in mine}
    assert call(hub, alice, "GET", "/trainings?state=sleeping").status_code == 400

    r = call(hub, alice, "POST", f"/trainings/{t['id']}/cancel")
    assert r.status_code == 202
    assert (r.json()["state"], r.json()["message"]) == (
        "cancelled",
        "cancelled by alice while queued",
    )
    events = call(hub, alice, "GET", f"/trainings/{t['id']}/metrics").json()["records"]
    assert [e["kind"] for e in events] == ["cancelled"]
    again = call(hub, alice, "POST", f"/trainings/{t['id']}/cancel")
    assert again.status_code == 409 and "has already ended (cancelled)" in again.json()["message"]
    ended = call(hub, alice, "GET", "/trainings?state=ended").json()["trainings"]
    assert t["id"] in {x["id"] for x in ended}
    assert call(hub, alice, "GET", f"/trainings/{t['id']}/logs").text == ""
    assert call(hub, alice, "GET", f"/trainings/{t['id']}/logs?tail=0").status_code == 400
    assert call(hub, alice, "GET", "/trainings/t-doesnotexist").status_code == 404


def test_the_cli_submits_lists_shows_and_cancels(hub: Hub, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    graph = tmp_path / "net.gpgraph.json"
    graph.write_text(json.dumps(GRAPH))
    env = {
        **os.environ,
        "GPUPOOL_API_URL": hub.pool,
        "GPUPOOL_API_TOKEN": hub.user_token("cleo"),
    }
    exe = str(Path(sys.executable).with_name("gpupool"))

    def gp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [exe, "train", *args], env=env, capture_output=True, text=True, timeout=60
        )

    r = gp(
        "submit",
        "--graph",
        str(graph),
        "--dataset",
        "digits",
        "--spec",
        "cpu-1",
        "--epochs",
        "2",
        "--learning-rate",
        "0.01",
        "--name",
        "from the cli",
    )
    assert r.returncode == 0, r.stderr
    tid = r.stdout.split()[1]
    assert r.stdout.startswith(f"submitted {tid} (from the cli): ")
    assert f"gpupool train logs {tid} --follow" in r.stdout
    r = gp("list")
    assert r.returncode == 0 and tid in r.stdout and "queued" in r.stdout
    assert r.stdout.splitlines()[0].split()[:4] == ["id", "name", "state", "spec"]
    r = gp("show", tid)
    assert "spec cpu-1, image trainer, dataset digits" in r.stdout
    assert "epochs 2" in r.stdout and "learning_rate 0.01" in r.stdout
    r = gp("show", tid, "--json")
    assert json.loads(r.stdout)["hyperparameters"]["epochs"] == 2
    cmd = gp("submit", "--spec", "cpu-1", "--json", "--", "python", "train.py", "--fast")
    assert json.loads(cmd.stdout)["command"] == ["python", "train.py", "--fast"]
    assert gp("cancel", tid).stdout.strip() == f"{tid}: cancelled by cleo while queued"
    assert gp("logs", tid).returncode == 0
    bad = gp("submit", "--graph", str(graph), "--dataset", "digits", "--spec", "h100")
    assert bad.returncode == 1
    assert "gpupool train: spec 'h100' is not a spec you may use; allowed: cpu-1" in bad.stderr
    none = gp("submit", "--spec", "cpu-1")
    assert none.returncode == 1 and "give --graph FILE, or a command after --" in none.stderr
    assert gp("show", "t-000000000000").returncode == 1


def test_one_user_cannot_flood_the_queue_or_send_too_much(hub: Hub) -> None:
    """A hostile user's bounds: at most QUEUED trainings waiting (429 with Retry-After and
    how to get out of it; others are not affected), pages of the list, the graph's free-form
    meta and the request's size."""
    flood, other = hub.user_token("flood"), hub.user_token("calm")
    ids = []
    for i in range(QUEUED):
        r = call(hub, flood, "POST", "/trainings", good(name=f"t{i}"))
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    r = call(hub, flood, "POST", "/trainings", good(name="one too many"))
    assert r.status_code == 429 and r.json()["reason"] == "queue-full", r.text
    assert int(r.headers["Retry-After"]) > 0
    assert f"at most {QUEUED} may wait at once: cancel some" in r.json()["message"]
    assert call(hub, other, "POST", "/trainings", good()).status_code == 201  # only flood's
    assert call(hub, flood, "POST", f"/trainings/{ids[0]}/cancel").status_code == 202
    r = call(hub, flood, "POST", "/trainings", good(name="after a cancel"))
    assert r.status_code == 201, r.text
    ids.append(r.json()["id"])

    # pages: every one of flood's trainings once, in the order submitted
    seen, cursor, pages = [], None, 0
    while True:
        q = "/trainings?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = call(hub, flood, "GET", q).json()
        seen += [t["id"] for t in page["trainings"]]
        pages += 1
        cursor = page["next"]
        if not cursor:
            break
    assert seen == ids and pages == 2
    assert call(hub, flood, "GET", "/trainings?limit=0").status_code == 400
    assert call(hub, flood, "GET", "/trainings?cursor=nonsense").status_code == 400

    big_meta = {**GRAPH, "meta": {"notes": "x" * 70_000}}
    r = call(hub, other, "POST", "/trainings", good(graph=big_meta))
    assert r.status_code == 422 and "graph.meta: " in r.json()["message"], r.text
    huge = good(name="huge", hyperparameters={"epochs": 1}, graph={**GRAPH, "pad": "x" * 2**21})
    r = call(hub, other, "POST", "/trainings", huge)
    assert r.status_code == 413 and "at most 1048576 bytes" in r.json()["message"], r.text


def test_a_burst_of_submits_cannot_pass_the_queue_limit_together(hub: Hub) -> None:
    """QUEUED + 5 submits at once: exactly QUEUED are queued (counted and added under one
    lock per user), the rest answer 429."""
    from concurrent.futures import ThreadPoolExecutor

    burst = hub.user_token("burst")
    with ThreadPoolExecutor(max_workers=QUEUED + 5) as pool:
        codes = sorted(
            pool.map(
                lambda i: call(hub, burst, "POST", "/trainings", good(name=f"b{i}")).status_code,
                range(QUEUED + 5),
            )
        )
    assert codes == [201] * QUEUED + [429] * 5, codes
