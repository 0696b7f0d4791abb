"""A real JupyterLab for browser tests of the lab extension and the notebook widgets:
``jupyter lab`` from the test environment (its Python kernel, anywidget, torch) with the
freshly built @gpupool/lab extension and the gpupool.lab server extension, on loopback,
with a token. Faster to start than the hub + image path (tests/integration/
test_lab_extension.py covers that one) and the same JupyterLab."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from .ports import free_base_port

REPO = Path(__file__).resolve().parents[2]
BUILT = REPO / "labextension" / "gpupool_lab" / "labextension"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


class Lab:
    """Runs as the test's user (root in CI). Root may write any file, so :meth:`put` makes
    a file that must look read-only immutable (chattr +i), which stops root too."""

    def __init__(self, root: Path, workdir: Path, env: dict[str, str] | None = None):
        self.extra_env = dict(env or {})  # e.g. GPUPOOL_API_URL and a token: a real pool
        self.root = root  # the lab's files
        self.workdir = workdir  # config, runtime, logs
        self.token = secrets.token_hex(16)
        self.port = free_base_port((0,))
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "lab.log"
        self.immutable: list[Path] = []

    def start(self, timeout: float = 90.0) -> Lab:
        if not (BUILT / "package.json").exists():
            raise RuntimeError(f"{BUILT} is missing: run labextension/build.sh (tests/run.sh does)")
        ext = self.workdir / "labextensions" / "@gpupool"
        ext.mkdir(parents=True, exist_ok=True)
        link = ext / "lab"
        if not link.exists():
            link.symlink_to(BUILT)
        config = self.workdir / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "labconfig").mkdir(exist_ok=True)
        (config / "labconfig" / "page_config.json").write_text(
            json.dumps(
                {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
            )
        )
        (config / "jupyter_server_config.json").write_text(
            json.dumps(
                {
                    "ServerApp": {"jpserver_extensions": {"gpupool.lab": True}},
                    # the built extension for JupyterLab and for Notebook 7 alike
                    "LabApp": {"extra_labextensions_path": [str(self.workdir / "labextensions")]},
                    "JupyterNotebookApp": {
                        "extra_labextensions_path": [str(self.workdir / "labextensions")]
                    },
                }
            )
        )
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_RUNTIME_DIR": str(self.workdir / "runtime"),
            "JUPYTER_DATA_DIR": str(self.workdir / "data"),
            "HOME": str(self.root),
            "GPUPOOL_API_URL": "",  # no pool here: the widgets say so and go on
        }
        env.pop("GPUPOOL_DATASETS", None)
        env.update(self.extra_env)
        args = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            f"--ServerApp.root_dir={self.root}",
            f"--IdentityProvider.token={self.token}",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--ServerApp.allow_root=True",
        ]
        self.proc = subprocess.Popen(
            args, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, cwd=self.root
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {self.log.read_text()[-3000:]}")
            try:
                r = requests.get(f"{self.url}/api/status?token={self.token}", timeout=2)
                if r.ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"jupyter lab did not start: {self.log.read_text()[-3000:]}")

    @classmethod
    @contextlib.contextmanager
    def in_temp(cls, env: dict[str, str] | None = None) -> Iterator[Lab]:
        """A started lab in fresh folders under /tmp, removed afterwards; ``env`` is added
        to its environment (and its kernels')."""
        top = Path(tempfile.mkdtemp(prefix="gpupool-lab-"))
        top.chmod(0o755)
        (top / "root").mkdir()
        (top / "work").mkdir()
        lab = cls(top / "root", top / "work", env)
        try:
            yield lab.start()
        finally:
            lab.stop()
            for p in lab.immutable:
                subprocess.run(["chattr", "-i", str(p)], check=False)
            shutil.rmtree(top, ignore_errors=True)

    def put(self, relpath: str, data: str | bytes, read_only: bool = False) -> Path:
        """A file in the lab's root; ``read_only``: nobody may write it, root included."""
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
        if read_only:
            path.chmod(0o444)
            if os.geteuid() == 0:
                subprocess.run(["chattr", "+i", str(path)], check=True)
                self.immutable.append(path)
        return path

    def lab_url(self, path: str = "") -> str:
        return f"{self.url}/lab/{path}?token={self.token}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
