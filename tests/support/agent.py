"""A real ``gpupool-agent`` process for tests, reading a FAKE NVML
(tests/support/fake_nvml.py: no GPU in CI) from a JSON world file the test rewrites."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from . import fake_nvml
from .docker import Engine
from .ports import free_base_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "gpupool-agent"


def write_world(path: Path, world: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(world))
    os.replace(tmp, path)


class AgentProcess:
    def __init__(self, tmp: Path, engine: Engine, node: str = "node-a"):
        self.tmp, self.engine, self.node = tmp, engine, node
        self.port = free_base_port((0,))
        self.world = tmp / "world.json"
        self.token = tmp / "agent-token"
        self.token.write_text("a" * 48)
        self.token.chmod(0o600)
        self.proc: subprocess.Popen[bytes] | None = None
        # the node's HAMi-core as the installer leaves it (tests break and mend it)
        self.vgpu = tmp / "vgpu"
        self.vgpu.mkdir(exist_ok=True)
        (self.vgpu / "libvgpu.so").write_bytes(b"\x7fELF stand-in")
        (self.vgpu / "ld.so.preload").write_text("/usr/local/vgpu/libvgpu.so\n")
        self.vgpulock = tmp / "vgpulock"
        self.vgpulock.mkdir(exist_ok=True)
        self.vgpulock.chmod(0o1777)

    def start(self) -> None:
        env = dict(os.environ)
        env[fake_nvml.ENV] = str(self.world)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [
                str(SCRIPT),
                f"--port={self.port}",
                f"--token-file={self.token}",
                "--AgentApp.nvml_module=tests.support.fake_nvml",
                f"--docker-url={self.engine.unix_url}",
                "--interval=0.5",
                f"--node-name={self.node}",
                f"--hami-core={self.vgpu / 'libvgpu.so'}",
                f"--vgpulock={self.vgpulock}",
            ],
            env=env,
            stdout=(self.tmp / "agent.log").open("ab"),
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def get(self, path: str) -> requests.Response:
        return requests.get(
            f"http://127.0.0.1:{self.port}{path}",
            headers={"Authorization": f"token {self.token.read_text()}"},
            timeout=5,
        )
