"""The installed ``gpupool-agent`` console script as its own process, on the fake NVML driven
through a world file: it serves, follows the file, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import fake_nvml
from tests.support.ports import free_base_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "gpupool-agent"
TOKEN = "p" * 48


def write_world(path: Path, world: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(world))
    os.replace(tmp, path)  # atomically, as the fake's docstring asks


def fetch(port: int, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except OSError as e:  # not listening yet
            last = e
        else:
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def agent_env(world_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GPUPOOL_AGENT_TOKEN"}
    env[fake_nvml.ENV] = str(world_file)
    # the console script's sys.path starts at .venv/bin; tests.support lives in the checkout
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def script() -> Path:
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing: run .venv/bin/pip install -e . --no-deps")
    return SCRIPT


def test_the_agent_process_follows_the_world_and_stops_on_sigterm(
    script: Path, tmp_path: Path
) -> None:
    world_file = tmp_path / "world.json"
    write_world(world_file, {"gpus": [{"utilization_gpu": 10}, {"utilization_gpu": 20}]})
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    port = free_base_port((0,))
    log = (tmp_path / "agent.log").open("w+")
    p = subprocess.Popen(
        [
            str(script),
            f"--port={port}",
            f"--token-file={token}",
            "--AgentApp.nvml_module=tests.support.fake_nvml",
            "--docker-url=",
            "--interval=0.2",
            "--node-name=fake-node",
        ],
        env=agent_env(world_file),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        until(lambda: fetch(port, "/health", None)[0] == 200, 20, "the agent answering /health")
        code, doc = until(lambda: fetch(port, "/api/sample"), 5, "a first sample")
        assert code == 200 and doc["node"] == "fake-node"
        assert [g["utilization_gpu"] for g in doc["gpus"]] == [10, 20]
        assert fetch(port, "/api/sample", "nope")[0] == 401

        t0 = time.monotonic()
        write_world(
            world_file,
            {
                "gpus": [
                    {"utilization_gpu": 77, "processes": [{"pid": 999999, "used_mib": 300}]},
                    {"utilization_gpu": 20},
                ],
                "xids": [{"gpu": 1, "xid": 79}],
            },
        )
        doc = until(
            lambda: (
                (d := fetch(port, "/api/sample")[1])["gpus"][0]["utilization_gpu"] == 77
                and d["xid_events"]
                and d
            ),
            5,
            "the sample following the world file",
        )
        print(f"\nthe sample followed the file after {time.monotonic() - t0:.2f} s")
        assert doc["gpus"][0]["processes"][0]["pid"] == 999999
        assert doc["gpus"][0]["processes"][0]["memory_mib"] == 300
        assert [(x["index"], x["xid"]) for x in doc["xid_events"]] == [(1, 79)]

        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=5) == 0
        assert time.monotonic() - t0 < 3, "stopping took too long"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        log.seek(0)
        out = log.read()
        log.close()
    print(out)
    assert "listening on http://127.0.0.1" in out and "stopping" in out
    assert "/api/sample" not in out  # requests are logged at debug level only
    assert TOKEN not in out


def test_the_agent_process_refuses_to_start_without_a_token(script: Path, tmp_path: Path) -> None:
    world_file = tmp_path / "world.json"
    write_world(world_file, {"gpus": 1})
    p = subprocess.run(
        [str(script), "--AgentApp.nvml_module=tests.support.fake_nvml", "--docker-url="],
        env=agent_env(world_file),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 2
    assert "gpupool-agent: no token configured" in p.stderr
