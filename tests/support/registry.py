"""A real image registry on loopback for pull tests: Debian's ``docker-registry`` (the
CNCF distribution registry), plain HTTP on 127.0.0.1:<free port>, its storage in a
temporary folder. Docker engines trust registries on 127.0.0.0/8 without TLS by default,
so the test engines push to and pull from it as from any registry.

    with Registry() as reg:
        engine.docker("tag", SINGLEUSER_TAG, reg.ref("gpupool/lab:t1"))
        engine.docker("push", reg.ref("gpupool/lab:t1"))
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from .docker import _apt_install
from .ports import free_base_port

BINARY = "/usr/bin/docker-registry"

CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


def ensure_registry_installed() -> None:
    if not Path(BINARY).exists():
        _apt_install("docker-registry")


class Registry:
    def __init__(self) -> None:
        self.port = 0
        self.folder: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ref(self, name: str) -> str:
        """``name`` (repository:tag) in this registry."""
        return f"{self.address}/{name}"

    def start(self, timeout: float = 30) -> Registry:
        ensure_registry_installed()
        self.folder = Path(tempfile.mkdtemp(prefix="gpupool-registry-"))
        self.port = free_base_port((0,))
        config = self.folder / "config.yml"
        config.write_text(CONFIG.format(root=self.folder / "storage", port=self.port))
        log = open(self.folder / "registry.log", "ab")
        self.proc = subprocess.Popen(
            [BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited with {self.proc.returncode}:\n{self.log()}"
                )
            try:
                if requests.get(f"http://{self.address}/v2/", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return (self.folder / "registry.log").read_text(errors="replace")[-4000:]  # type: ignore[operator]
        except (OSError, TypeError):
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
