"""Spawn time: GpuPoolSpawner next to plain DockerSpawner, same engine, same image, one run.

Two real hubs run side by side against one Docker engine started for the benchmark (host
networking, as the quickstart's local node): one with GpuPoolSpawner and a sliced spec
(reservation through the pool service, home volume, HAMi-core mounts and variables; the
HAMi-core stand-in library, no GPU here), one with dockerspawner's DockerSpawner and the
same image, CPU and memory limits (tests/bench/plain_spawner.py gives it a port per server,
as DockerSpawner's documentation says to for host networking). Spawns alternate between
the two hubs so drift on the machine hits both alike.

A sample is the time from POST /hub/api/users/<u>/server until the hub reports the server
ready (JupyterLab answered the hub), for a user who has never started before; each server
is stopped before the next sample. Prints each hub's median, p90, and the ratio of medians.

    .venv/bin/python tests/bench/bench_spawn.py            # 12 samples each
    .venv/bin/python tests/bench/bench_spawn.py --samples 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.catalogs import write_engine_catalog  # noqa: E402
from tests.support.docker import ensure_docker_installed, start_engines, stop_engines  # noqa: E402
from tests.support.hub import Hub  # noqa: E402
from tests.support.images import ensure_image  # noqa: E402

PLAIN_CONFIG = """
# benchmark baseline: dockerspawner's DockerSpawner, same engine, image and limits
import sys
sys.path.insert(0, {repo!r})
c.JupyterHub.spawner_class = "tests.bench.plain_spawner.HostNetworkDockerSpawner"
c.DockerSpawner.client_kwargs = {{"base_url": {engine!r}}}
c.DockerSpawner.image = "gpupool/singleuser:latest"
c.DockerSpawner.network_name = "host"
c.DockerSpawner.use_internal_ip = True  # no port bindings with host networking
c.DockerSpawner.remove = True
c.DockerSpawner.cpu_limit = 0.5
c.DockerSpawner.mem_limit = "1G"
c.DockerSpawner.options_form = ""
c.Spawner.default_url = "/lab"
"""


def spawn_once(hub: Hub, user: str, options: dict | None) -> float:
    token = hub.user_token(user)
    h = {"Authorization": f"token {token}"}
    body = {"user_options": options} if options else None
    t0 = time.perf_counter()
    r = requests.post(f"{hub.api}/users/{user}/server", headers=h, json=body, timeout=300)
    if r.status_code not in (201, 202):
        raise RuntimeError(f"spawn of {user} answered {r.status_code}: {r.text}\n{hub.log()}")
    while True:
        m = requests.get(
            f"{hub.api}/users/{user}",
            headers={"Authorization": f"token {hub.admin_token}"},
            timeout=30,
        ).json()
        server = m.get("servers", {}).get("")
        if server and server.get("ready"):
            break
        if time.perf_counter() - t0 > 300:
            raise RuntimeError(f"{user} not ready in 300 s\n{hub.log()}")
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    requests.delete(f"{hub.api}/users/{user}/server", headers=h, timeout=120)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = requests.get(
            f"{hub.api}/users/{user}",
            headers={"Authorization": f"token {hub.admin_token}"},
            timeout=30,
        ).json()
        if not m.get("servers"):
            break
        time.sleep(0.1)
    return elapsed


def summary(xs: list[float]) -> dict[str, float]:
    s = sorted(xs)
    return {
        "n": len(s),
        "median_s": statistics.median(s),
        "p90_s": s[min(len(s) - 1, round(0.9 * (len(s) - 1)))],
        "min_s": s[0],
        "max_s": s[-1],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=12, help="spawns per spawner (default 12)")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured spawns each first")
    args = ap.parse_args()

    ensure_docker_installed()
    engines = start_engines(["node-a"])
    hubs: list[Hub] = []
    try:
        ensure_image(engines.values())
        cat = write_engine_catalog(Path(tempfile.mkdtemp(prefix="gpupool-bench-")), engines)
        pool_hub = Hub(cat).start()
        hubs.append(pool_hub)
        plain_hub = Hub(
            cat, extra_config=PLAIN_CONFIG.format(repo=str(REPO), engine=engines["node-a"].url)
        ).start()
        hubs.append(plain_hub)
        runs = {
            "GpuPoolSpawner": (pool_hub, {"spec": "a100-40g", "image": "lab"}),
            "DockerSpawner": (plain_hub, None),
        }
        times: dict[str, list[float]] = {k: [] for k in runs}
        for i in range(args.warmup + args.samples):
            order = list(runs) if i % 2 == 0 else list(reversed(runs))
            for name in order:
                hub, options = runs[name]
                t = spawn_once(hub, f"b{i:03d}", options)
                if i >= args.warmup:
                    times[name].append(t)
                print(f"{name:15s} sample {i:3d}: {t * 1000:8.0f} ms", flush=True)
        res = {k: summary(v) for k, v in times.items()}
        ratio = res["GpuPoolSpawner"]["median_s"] / res["DockerSpawner"]["median_s"]
        print()
        print(f"{'spawner':15s} {'n':>3s} {'median':>9s} {'p90':>9s} {'min':>9s} {'max':>9s}")
        for k, r in res.items():
            print(
                f"{k:15s} {r['n']:3d} {r['median_s'] * 1000:7.0f}ms {r['p90_s'] * 1000:7.0f}ms"
                f" {r['min_s'] * 1000:7.0f}ms {r['max_s'] * 1000:7.0f}ms"
            )
        print(f"\nratio of medians GpuPoolSpawner / DockerSpawner: {ratio:.3f} (aim: <= 1.10)")
        print("--- json ---")
        print(json.dumps({"spawn": res, "ratio_of_medians": ratio}))
        return 0
    finally:
        for h in hubs:
            h.cleanup()
        stop_engines(engines)


if __name__ == "__main__":
    sys.exit(main())
