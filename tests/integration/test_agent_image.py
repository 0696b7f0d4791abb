"""The agent image from images/agent, built by images/build.sh on an engine the test
starts, run as a container the way deploy/ describes (host network and PID namespace, the
token file mounted read-only). No GPU and no NVIDIA runtime here: the agent must still
serve, with an empty inventory and the reason, and refuse requests without its token."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.docker import Engine, ensure_docker_installed
from tests.support.images import build_image
from tests.support.ports import free_base_port

pytestmark = pytest.mark.docker
TAG = "gpupool/agent:test"
TOKEN = "t" * 48


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    ensure_docker_installed()
    e = Engine("agent-image").start()
    try:
        build_image(e, TAG, image="agent")
        yield e
    finally:
        e.stop()


def test_agent_container_without_nvml(engine: Engine, tmp_path: Path) -> None:
    token = tmp_path / "agent.token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    os.chown(token, 10001, 10001)  # the image's user; the agent wants the file its own
    port = free_base_port((0,))
    client = engine.client()
    info = client.images.get(TAG).attrs["Config"]
    assert info["User"] == "10001" and info["Entrypoint"] == ["gpupool-agent"]
    c = client.containers.run(
        TAG,
        ["--ip=127.0.0.1", f"--port={port}", "--token-file=/run/agent.token", "--docker-url="],
        detach=True,
        network_mode="host",
        pid_mode="host",
        volumes={str(token): {"bind": "/run/agent.token", "mode": "ro"}},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        inv = None
        while time.monotonic() < deadline:
            try:
                r = requests.get(
                    f"{url}/api/inventory", headers={"Authorization": f"token {TOKEN}"}, timeout=2
                )
                if r.status_code == 200:
                    inv = r.json()
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        assert inv is not None, c.logs().decode()[-2000:]
        assert inv["gpus"] == [] and inv["nvml"]["ok"] is False
        assert "NVML" in inv["nvml"]["error"] or "libnvidia-ml" in inv["nvml"]["error"]
        assert requests.get(f"{url}/api/inventory", timeout=2).status_code == 401
        assert requests.get(f"{url}/health", timeout=2).json() == {"status": "ok"}
        text = requests.get(
            f"{url}/metrics", headers={"Authorization": f"token {TOKEN}"}, timeout=2
        ).text
        assert re.search(r"^gpupool_agent_nvml_up(\{[^}]*\})? 0$", text, re.M), text
        print(f"agent container without NVML says: {inv['nvml']['error']}")
    finally:
        c.remove(force=True)
