"""A real JupyterHub (with configurable-http-proxy and the managed pool service) for
integration tests, started from the repository's own jupyterhub_config.py."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from .ports import free_base_port

REPO = Path(__file__).resolve().parents[2]

TEST_CONFIG = """
c = get_config()  # noqa
load_subconfig({main!r})
# Test-only: a service that may create users, groups and tokens (never in jupyterhub_config.py).
c.JupyterHub.services.append({{"name": "test-admin", "api_token": {token!r}}})
c.JupyterHub.load_roles.append(
    {{"name": "test-admin", "scopes": ["admin:users", "admin:servers", "admin:groups", "tokens", "list:users"], "services": ["test-admin"]}}
)
"""


ADMIN_PASSWORD = "test-admin-password-of-at-least-32-chars"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Hub:
    def __init__(
        self,
        catalog_dir: Path | str,
        *,
        db_url: str | None = None,
        state_dir: Path | None = None,
        extra_config: str = "",
        python: str = sys.executable,
        main_config: Path = REPO / "jupyterhub_config.py",
        watch_nodes: bool = True,
    ):
        """``extra_config``: Python appended to the hub's test configuration (benchmarks
        use it to swap the spawner class). ``python`` and ``main_config``: the hub of an
        installed gpupool (a fresh venv's python, the jupyterhub_config.py of `gpupool init`)
        instead of the checkout's."""
        self.extra_config = extra_config
        self.python = python
        self.main_config = main_config
        self.watch_nodes = watch_nodes
        self.catalog_dir = Path(catalog_dir)
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="gpupool-hub-"))
        self.port = free_base_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/hub/api"
        self.pool = f"{self.url}/services/gpupool/api"
        self.admin_token = secrets.token_hex(24)
        self.automation_token = secrets.token_hex(24)
        self.metrics_token = secrets.token_hex(24)
        self.db_url = db_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.state_dir / "hub.log"
        self.extra_env: dict[str, str] = {}  # set before start(): GPUPOOL_HUB_IP and the like
        # started as `jupyterhub &` from a script starts it (the quickstart): SIGINT ignored
        self.sigint_ignored = False

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            GPUPOOL_CONFIG_DIR=str(self.catalog_dir),
            GPUPOOL_STATE_DIR=str(self.state_dir),
            GPUPOOL_PORT=str(self.port),
            GPUPOOL_API_TOKEN=self.automation_token,
            GPUPOOL_METRICS_TOKEN=self.metrics_token,
            GPUPOOL_USER_PASSWORD="test-user-password",
            GPUPOOL_ADMIN_PASSWORD=ADMIN_PASSWORD,  # for the users in pool.yaml's admins
        )
        if self.db_url:
            env["GPUPOOL_DB_URL"] = self.db_url
        env["GPUPOOL_WATCH_NODES"] = "1" if self.watch_nodes else "0"
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60) -> Hub:
        cfg = self.state_dir / "test_config.py"
        cfg.write_text(
            TEST_CONFIG.format(main=str(self.main_config), token=self.admin_token)
            + self.extra_config
        )
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.python, "-m", "jupyterhub", "-f", str(cfg)],
            cwd=self.state_dir,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_ignore_sigint if self.sigint_ignored else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log()}")
            try:
                r = requests.get(f"{self.pool}/openapi.json", timeout=2)
                if r.status_code == 200 and r.headers.get("content-type", "").startswith(
                    "application/json"
                ):
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"hub did not come up in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # the proxy and the service are in the same process group; make sure none linger
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def cleanup(self) -> None:
        self.stop()
        # keep the log for a person reading a failed CI run
        keep = REPO / ".state" / "test-logs"
        keep.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copy2(self.log_path, keep / f"hub-{self.port}.log")
        shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- hub API helpers -----------------------------------------------------------
    def hub_api(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.admin_token}"}
        r = requests.request(method, f"{self.api}{path}", headers=headers, timeout=30, **kw)
        r.raise_for_status()
        return r

    def user_token(
        self, name: str, groups: tuple[str, ...] = (), scopes: list[str] | None = None
    ) -> str:
        r = requests.get(
            f"{self.api}/users/{name}",
            headers={"Authorization": f"token {self.admin_token}"},
            timeout=30,
        )
        if r.status_code == 404:
            self.hub_api("POST", f"/users/{name}")
        for g in groups:
            r = requests.get(
                f"{self.api}/groups/{g}",
                headers={"Authorization": f"token {self.admin_token}"},
                timeout=30,
            )
            if r.status_code == 404:
                self.hub_api("POST", f"/groups/{g}")
            self.hub_api("POST", f"/groups/{g}/users", json={"users": [name]})
        body: dict[str, Any] = {"note": "test"}
        if scopes is not None:
            body["scopes"] = scopes
        return self.hub_api("POST", f"/users/{name}/tokens", json=body).json()["token"]
