"""The compose deployment (deploy/compose/compose.yaml), as an installer brings it up: the
hub image (with the pool service), the agent image and the trainer image built from
images/ with the CPU base, on a real Docker engine the test starts, against a real
PostgreSQL the test starts (the compose file's own postgres service needs a registry
image; its profile is left off here, as for a site with its own PostgreSQL).

No GPU in CI: the node declares A100s and runs no GPU runtime, and the agent container
reads the FAKE NVML (tests/support/fake_nvml.py, mounted in by a compose override; the
runtime is runc). Everything else is what a site runs.

- `docker-compose up` brings the hub and the agent up; the pool's schema is made in
  PostgreSQL at the newest revision, JupyterHub's tables beside it;
- a user logs in with the login form, starts a server on a sliced spec (it runs on the
  node, through the hub container's socket mount) and submits a training, which runs to
  its end;
- the hub container is restarted: the server keeps running, the training and the
  reservation are still there (PostgreSQL), the hub finds the server again;
- `gpupool db backup` of that database, restored into a fresh one, holds the same rows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from sqlalchemy import create_engine, inspect

from gpupool.lab.client import PoolApi
from gpupool.pool import migrate
from gpupool.pool.backup import backup, restore
from gpupool.pool.tables import make_engine
from tests.support.catalogs import write_engine_catalog
from tests.support.docker import Engine, ensure_docker_installed, start_engines
from tests.support.docker import stop_engines as stop_all
from tests.support.images import ensure_image
from tests.support.ports import free_base_port
from tests.support.postgres import Postgres

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose" / "compose.yaml"
HUB, AGENT, TRAINER = "gpupool/hub:latest", "gpupool/agent:latest", "gpupool/trainer:latest"
PASSWORD = "compose-user-password"
SPECS = [
    {
        "slug": "a100-20g",
        "display_name": "A100 · 20 GiB",
        "gpus": 1,
        "gpu_model": "A100",
        "gpu_memory": "20GiB",
        "gpu_sm_percent": 30,
        "cpu": 1,
        "memory": "2GiB",
    }
]


def compose_cli() -> list[str]:
    found = shutil.which("docker-compose")
    if found:
        return [found]
    r = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if r.returncode == 0:
        return ["docker", "compose"]
    raise RuntimeError("neither docker-compose nor `docker compose`: tests/run.sh installs it")


class Deployment:
    """deploy/compose on one engine, with a .env and an override written by the test."""

    def __init__(self, tmp: Path, engine: Engine, pg_url: str, catalog: Path, agent_port: int):
        self.tmp, self.engine = tmp, engine
        self.port = free_base_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_token = os.urandom(16).hex()
        secrets = tmp / "secrets"
        secrets.mkdir()
        token = secrets / "agent.token"
        token.write_text(os.urandom(24).hex())
        os.chown(token, 10001, 10001)  # the agent image's user; the hub (root) reads it too
        token.chmod(0o600)
        self.agent_token = token
        fake = tmp / "fake"
        fake.mkdir()
        shutil.copy(REPO / "tests" / "support" / "fake_nvml.py", fake / "fake_nvml.py")
        (fake / "world.json").write_text('{"gpus": []}')
        for p in (fake, fake / "fake_nvml.py", fake / "world.json"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        vgpulock = tmp / "vgpulock"
        vgpulock.mkdir()
        vgpulock.chmod(0o1777)
        self.env_file = tmp / "compose.env"
        env = {
            "COMPOSE_PROJECT_NAME": "gpupool-test",
            "COMPOSE_PROFILES": "",
            "GPUPOOL_DB_URL": pg_url,
            "GPUPOOL_HUB_DB_URL": pg_url,
            "GPUPOOL_CONFIG": str(catalog),
            "GPUPOOL_SECRETS": str(secrets),
            "GPUPOOL_DOCKER_SOCKET": str(engine.socket),
            "GPUPOOL_DOCKER_GID": "0",
            "GPUPOOL_IP": "127.0.0.1",
            "GPUPOOL_PORT": str(self.port),
            "GPUPOOL_HUB_IP": "127.0.0.1",
            "GPUPOOL_USER_PASSWORD": PASSWORD,
            "GPUPOOL_API_TOKEN": self.api_token,
            "GPUPOOL_NODE_NAME": "compose-a",
            "GPUPOOL_AGENT_PORT": str(agent_port),
            "GPUPOOL_AGENT_TOKEN_FILE": str(token),
            "GPUPOOL_AGENT_RUNTIME": "runc",
            # the stand-in library with its ld.so.preload (write_engine_catalog), as a node
            # keeps HAMi-core; the agent checks it before the node takes sliced specs
            "GPUPOOL_HAMI_CORE_DIR": str(catalog / "vgpu"),
            "GPUPOOL_VGPULOCK": str(vgpulock),
        }
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        # CI only: the agent reads the FAKE NVML (no GPU); everything else is compose.yaml's
        self.override = tmp / "compose.ci.yaml"
        self.override.write_text(
            yaml.safe_dump(
                {
                    "services": {
                        "agent": {
                            "environment": {
                                "PYTHONPATH": "/opt/fake",
                                "GPUPOOL_FAKE_NVML_WORLD": "/opt/fake/world.json",
                            },
                            "volumes": [f"{fake}:/opt/fake:ro"],
                            "entrypoint": [
                                "gpupool-agent",
                                "--AgentApp.nvml_module=fake_nvml",
                                "--interval=0.5",
                            ],
                        }
                    }
                }
            )
        )

    def compose(self, *args: str, check: bool = True, timeout: int = 300) -> str:
        cmd = [
            *compose_cli(),
            "--env-file",
            str(self.env_file),
            "-f",
            str(COMPOSE),
            "-f",
            str(self.override),
            *args,
        ]
        env = {**os.environ, "DOCKER_HOST": self.engine.unix_url}
        env.pop("COMPOSE_PROFILES", None)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd[-len(args) :])} failed:\n{r.stdout}\n{r.stderr}")
        return r.stdout + r.stderr

    def logs(self) -> str:
        out = [self.compose("ps", check=False)]
        for service in ("agent", "hub"):
            out.append(self.compose("logs", "--no-color", "--tail=40", service, check=False))
        return "\n".join(out)[-8000:]

    def wait_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = requests.get(f"{self.url}/services/gpupool/api/openapi.json", timeout=2)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"the hub did not come up in {timeout} s:\n{self.logs()}")

    def pool(self, method: str, path: str, **kw: Any) -> requests.Response:
        return requests.request(
            method,
            f"{self.url}/services/gpupool/api{path}",
            headers={"Authorization": f"token {self.api_token}"},
            timeout=30,
            **kw,
        )


def login_token(url: str, user: str) -> str:
    """Log in through the hub's form as a browser does, then make an API token."""
    s = requests.Session()
    s.get(f"{url}/hub/login", timeout=30)
    xsrf = s.cookies.get("_xsrf", "")
    r = s.post(
        f"{url}/hub/login",
        data={"username": user, "password": PASSWORD, "_xsrf": xsrf},
        timeout=30,
    )
    assert r.ok and "/hub/login" not in r.url, f"login failed: {r.status_code} {r.url}"
    r = s.post(
        f"{url}/hub/api/users/{user}/tokens",
        json={"note": "compose test"},
        headers={"X-XSRFToken": s.cookies.get("_xsrf", "")},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return r.json()["token"]


def hub_api(url: str, token: str, method: str, path: str, **kw: Any) -> requests.Response:
    return requests.request(
        method,
        f"{url}/hub/api{path}",
        headers={"Authorization": f"token {token}"},
        timeout=60,
        **kw,
    )


def wait_for(what: str, probe: Any, timeout: float, logs: Any) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s\n{logs()}")


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    ensure_docker_installed()
    engs = start_engines(["compose-a"])
    eng = engs["compose-a"]
    try:
        for tag, image in ((HUB, "hub"), (AGENT, "agent"), (TRAINER, "trainer")):
            ensure_image(eng, tag, image=image)
        yield eng
    finally:
        stop_all(engs)


@pytest.fixture(scope="module")
def deployment(
    engine: Engine, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("compose")
    tmp.chmod(0o755)
    agent_port = free_base_port((0,))
    catalog = write_engine_catalog(tmp / "catalog", {"compose-a": engine}, specs=SPECS)
    nodes = yaml.safe_load((catalog / "nodes.yaml").read_text())
    nodes["nodes"][0]["agent"] = {
        "url": f"http://127.0.0.1:{agent_port}",
        "token_file": "/etc/gpupool/secrets/agent.token",  # the path inside the hub container
    }
    (catalog / "nodes.yaml").write_text(yaml.safe_dump(nodes))
    (catalog / "images.yaml").write_text(
        yaml.safe_dump({"images": [{"name": "trainer", "reference": TRAINER, "training": True}]})
    )
    (catalog / "pool.yaml").write_text(
        yaml.safe_dump(
            {
                "health": {"probe_interval": 1, "down_after": 3, "reconcile_interval": 5},
                "trainings": {"poll_interval": 0.5},
            }
        )
    )
    for p in [catalog, *catalog.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    pg_url = postgres.create_database("gpupool_compose")
    d = Deployment(tmp, engine, pg_url, catalog, agent_port)
    # the agent reports the GPUs the catalog declares, from the fake NVML
    gpus = nodes["nodes"][0]["gpus"]
    (tmp / "fake" / "world.json").write_text(
        json.dumps({"gpus": [{"uuid": g["uuid"], "name": g["model"]} for g in gpus]})
    )
    d.pg_url = pg_url  # type: ignore[attr-defined]
    try:
        d.compose("up", "-d", "--no-build")
        d.wait_up()
        yield d
    finally:
        keep = REPO / ".state" / "test-logs"
        keep.mkdir(parents=True, exist_ok=True)
        (keep / "compose.log").write_text(d.logs())
        d.compose("down", "-v", "--timeout", "10", check=False)
        for c in engine.client().containers.list(all=True, filters={"label": "io.gpupool.owner"}):
            c.remove(force=True)


def test_compose_brings_the_hub_and_the_agent_up_on_postgresql(deployment: Deployment) -> None:
    out = deployment.compose("ps")
    assert "gpupool-test_hub_1" in out.replace("-hub-1", "_hub_1"), out
    engine = create_engine(deployment.pg_url)  # type: ignore[attr-defined]
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        assert migrate.current(conn) == migrate.head()
    engine.dispose()
    assert {"reservations", "trainings", migrate.VERSION_TABLE} <= tables  # the pool's
    assert {"users", "servers", "api_tokens", "alembic_version"} <= tables  # JupyterHub's
    # the agent in its container answers the pool: the node is up with the agent's GPUs
    node = wait_for(
        "the node's agent",
        lambda: next(
            (
                n
                for n in deployment.pool("GET", "/nodes").json()["nodes"]
                if n["name"] == "compose-a"
                and ((n.get("health") or {}).get("agent") or {}).get("nvml_ok")
                and n.get("gpu_source") == "agent"
            ),
            None,
        ),
        60,
        deployment.logs,
    )
    assert node["health"]["state"] == "up", node
    # HAMi-core found installed by the agent's check (compose.yaml mounts it in): sliced
    # specs may go there
    assert node["takes_slices"] is True and not node.get("slice_problem"), node


def test_a_spawn_and_a_training_pass_through_and_survive_a_hub_restart(
    deployment: Deployment, engine: Engine, tmp_path: Path
) -> None:
    url = deployment.url
    token = login_token(url, "cora")
    r = hub_api(
        url, token, "POST", "/users/cora/server", json={"user_options": {"spec": "a100-20g"}}
    )
    assert r.status_code in (201, 202), r.text

    def ready() -> dict[str, Any] | None:
        s = hub_api(url, token, "GET", "/users/cora").json().get("servers", {}).get("")
        return s if s and s.get("ready") else None

    wait_for("cora's server", ready, 180, deployment.logs)
    # JupyterLab answers through the hub's proxy, on the node's engine
    r = requests.get(
        f"{url}/user/cora/api/status", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    (box,) = engine.client().containers.list(filters={"label": "io.gpupool.owner=cora"})
    env = dict(e.split("=", 1) for e in box.attrs["Config"]["Env"])
    assert env["CUDA_DEVICE_MEMORY_LIMIT_0"] == "20480m" and env["CUDA_DEVICE_SM_LIMIT_0"] == "30"

    # the image's kernels: the PyTorch one says this server's slice at start, the CPU-only
    # one hides the GPUs
    probe = (
        "import json; from jupyter_client.manager import start_new_kernel\n"
        "out = {}\n"
        "for name in ('gpupool-pytorch', 'gpupool-cpu'):\n"
        "    km, kc = start_new_kernel(kernel_name=name)\n"
        "    out[name] = kc.kernel_info(reply=True, timeout=60)['content']['banner']\n"
        "    kc.stop_channels(); km.shutdown_kernel(now=True)\n"
        "print(json.dumps(out))\n"
    )
    rc, raw = box.exec_run(["python", "-c", probe], user="1000", workdir="/home/jovyan")
    assert rc == 0, raw.decode(errors="replace")
    banners = json.loads(raw.decode().strip().splitlines()[-1])
    assert "gpupool · spec a100-20g on node compose-a" in banners["gpupool-pytorch"]
    # no GPU runtime on this node: the model nodes.yaml declares, through the simulated NVML
    # the spawner points such servers at, which says so
    assert (
        "GPU 0: NVIDIA A100-SXM4-80GB (simulated) (GPU-aaaaaaaa…): 20 GiB of memory, "
        "30 % of the SMs" in banners["gpupool-pytorch"]
    )
    assert "PyTorch 2." in banners["gpupool-pytorch"]
    assert "CPU-only kernel: this server's GPUs (1 GPU) are hidden" in banners["gpupool-cpu"]

    client = PoolApi(f"{url}/services/gpupool/api", token, timeout=30)
    t = client.submit_training(
        {
            "name": "compose-echo",
            "command": [
                "python",
                "-c",
                "print('GPUPOOL-METRIC ' + '{\"epoch\": 1, \"loss\": 0.5}')",
            ],
            "spec": "a100-20g",
            "image": "trainer",
        }
    )
    done = wait_for(
        "the training",
        lambda: (x := client.training(t["id"]))["state"] in ("succeeded", "failed") and x,
        180,
        deployment.logs,
    )
    assert done["state"] == "succeeded", (done, client.training_logs(t["id"]))

    reservation = deployment.pool("GET", "/reservations?owner=cora").json()["reservations"]
    assert len(reservation) == 1
    deployment.compose("restart", "hub")
    deployment.wait_up()
    # the server kept running, the hub and the pool found it and its reservation again
    assert box.reload() is None and box.status == "running"
    assert ready() is not None
    r = requests.get(
        f"{url}/user/cora/api/status", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert r.status_code == 200
    assert deployment.pool("GET", "/reservations?owner=cora").json()["reservations"] == reservation
    assert client.training(t["id"])["state"] == "succeeded"

    # the operator's commands inside the hub container (docs/operations.md)
    out = deployment.compose("exec", "-T", "hub", "gpupool", "db", "current")
    assert f"{migrate.head()} (the newest)" in out, out
    out = deployment.compose("exec", "-T", "hub", "gpupool", "db", "backup", "/tmp/pool.gz")
    assert f"at revision {migrate.head()} written to /tmp/pool.gz" in out, out

    # a backup of the deployment's database restores into a new one with the same rows
    src = make_engine(deployment.pg_url)  # type: ignore[attr-defined]
    header = backup(src, tmp_path / "pool.gz")
    src.dispose()
    assert header["tables"]["trainings"] >= 1 and header["tables"]["reservations"] >= 2
    copy = make_engine(f"sqlite:///{tmp_path / 'copy.sqlite'}")
    done_restore = restore(copy, tmp_path / "pool.gz")
    assert done_restore["restored"] == {k: v for k, v in header["tables"].items() if v}
    copy.dispose()

    assert hub_api(url, token, "DELETE", "/users/cora/server").status_code in (202, 204)
    wait_for(
        "cora's reservation freed",
        lambda: not deployment.pool("GET", "/reservations?owner=cora").json()["reservations"],
        60,
        deployment.logs,
    )
