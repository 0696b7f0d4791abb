"""The pool API keeps its OpenAPI document, checked by a tool nobody here wrote:
schemathesis, with all its checks, against a live pool service behind a real JupyterHub
and configurable-http-proxy, once with a pool admin's token and once with a plain user's.

A fixed seed and a bounded number of examples per operation keep it repeatable and
short. The run's configuration (written below) says two things the document cannot:
- the spec names of this test catalog, so that POSTs create real reservations and
  trainings that the stateful phase follows through the document's links;
- 422 is a refusal of a well-formed request on its content (a spec the caller may not
  use, a graph that does not build), as the document says per operation, and 503 the
  documented "nothing fits now" (reason capacity), not a crash.
Any other mismatch (an undocumented status, a body that is not the documented schema, a
request the document allows refused as malformed, one it forbids accepted, a 405 without
Allow, a deleted object still there) fails the run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import CATALOG
from tests.support.hub import Hub

pytestmark = pytest.mark.hub

EXAMPLES = 25  # per operation and phase
CONFIG = """\
[generation]
max-examples = {examples}

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503"]

[dictionaries.specs]
values = {specs}

[parameters]
"body.spec" = {{ dictionary = "specs", probability = 0.8 }}
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The test catalog, with the per-user write limit raised so that the plain user's
    run reaches the operations behind it (the limit's own tests are elsewhere)."""
    catalog = tmp_path_factory.mktemp("catalog")
    shutil.copytree(CATALOG, catalog, dirs_exist_ok=True)
    pool = yaml.safe_load((catalog / "pool.yaml").read_text()) or {}
    pool.setdefault("limits", {}).update(writes_per_minute=100000, write_burst=100000)
    (catalog / "pool.yaml").write_text(yaml.safe_dump(pool))
    h = Hub(catalog, watch_nodes=False).start()
    try:
        yield h
    finally:
        h.cleanup()


def schemathesis(hub: Hub, token: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    specs = [s["slug"] for s in yaml.safe_load((CATALOG / "specs.yaml").read_text())["specs"]]
    config = tmp / "schemathesis.toml"
    config.write_text(CONFIG.format(examples=EXAMPLES, specs=specs[:1]))
    exe = Path(sys.executable).with_name("schemathesis")
    return subprocess.run(
        [
            str(exe),
            "--config-file",
            str(config),
            "run",
            f"{hub.pool}/openapi.json",
            "--url",
            hub.pool,
            "--checks",
            "all",
            "--seed",
            "1",
            "-H",
            f"Authorization: token {token}",
            "--no-color",
        ],
        cwd=tmp,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _report(r: subprocess.CompletedProcess[str]) -> str:
    return (r.stdout + r.stderr)[-12000:]


@pytest.mark.parametrize("who", ["pool-admin", "user"])
def test_schemathesis_finds_no_failure(hub: Hub, who: str, tmp_path: Path) -> None:
    token = (
        hub.user_token("ada", groups=("gpupool-admins",))
        if who == "pool-admin"
        else hub.user_token("alice")
    )
    r = schemathesis(hub, token, tmp_path)
    out = _report(r)
    print(out)  # the figures: operations, phases, cases generated
    assert r.returncode == 0, out
    # every operation the served document lists was selected and tested
    selected = re.search(r"Selected: (\d+)/(\d+)", out)
    tested = re.search(r"Tested: (\d+)", out)
    assert selected and tested and " passed" in out, out
    assert selected.group(1) == selected.group(2) == tested.group(1), out
    assert int(tested.group(1)) >= 32, out  # the ssh sessions' two among them


def test_unknown_paths_and_methods_answer_the_apis_json(hub: Hub) -> None:
    token = hub.user_token("alice")
    auth = {"Authorization": f"token {token}"}
    for method, path in [
        ("GET", "/datasets/%F1%B1%BF%B0%2A"),
        ("POST", "/nodes/no*such/drain"),
        ("GET", "/nothing/here"),
        ("DELETE", "/"),
    ]:
        r = requests.request(method, f"{hub.pool}{path}", headers=auth, timeout=30)
        assert r.headers["Content-Type"].startswith("application/json"), (path, r.text)
        body = r.json()
        assert body["status"] == r.status_code and body["message"], body
        assert r.status_code in (404, 405), (method, path, r.status_code)
    r = requests.request("TRACE", f"{hub.pool}/reservations", headers=auth, timeout=30)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, POST", r.headers
    assert r.json()["allowed"] == ["GET", "POST"]
    r = requests.put(f"{hub.pool}/trainings/t-1/cancel", headers=auth, timeout=30)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    # a method no handler knows: 405 naming what a known path takes, 404 on an unknown one
    r = requests.request("PROPFIND", f"{hub.pool}/specs", headers=auth, timeout=30)
    assert r.status_code == 405 and r.headers["Allow"] == "GET", r.text
    r = requests.request("PROPFIND", f"{hub.pool}/no/such/path", headers=auth, timeout=30)
    assert r.status_code == 404 and r.json()["status"] == 404, r.text
