"""Spawn time on a healthy node while another node's engine hangs, against the same spawns
with every node healthy, in one run (issue 18: a hung node is contained).

Two Docker engines started for the benchmark, a real hub, proxy and pool service. node-b's
engine listens on TCP+TLS; SERVERS servers are started there. Then samples of spawn time
on node-a are taken (the baseline), node-b's engine is killed, and on its TCP port a
listener accepts every connection and never answers (a dockerd that hangs, or a network
path that drops replies): the hub polls every server on node-b every 15 s, each poll a
Docker call that waits for its 30 s timeout. The same samples on node-a are taken again.

A sample is the time from POST /hub/api/users/<u>/server until the hub reports the server
ready, on node-a (node-b drained), for a user who never started before; each server is
stopped before the next. Prints both medians and their ratio (aim: <= 1.2). Before the
Docker calls had a thread pool per node, the hub's 8 shared threads were all held by
node-b's polls and spawns on node-a waited behind them.

    .venv/bin/python tests/bench/bench_hung_node.py               # 8 samples each
    .venv/bin/python tests/bench/bench_hung_node.py --servers 12 --samples 10
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.bench.bench_spawn import spawn_once, summary  # noqa: E402
from tests.support.catalogs import write_engine_catalog  # noqa: E402
from tests.support.docker import ensure_docker_installed, start_engines, stop_engines  # noqa: E402
from tests.support.hub import Hub  # noqa: E402
from tests.support.images import ensure_image  # noqa: E402
from tests.support.servers import spawn, wait_ready  # noqa: E402

# a small slice: a dozen servers fit on one of the test node's two declared GPUs
SPEC = {
    "slug": "slice-8g",
    "display_name": "A100 8 GiB",
    "gpus": 1,
    "gpu_model": "A100",
    "gpu_memory": "8GiB",
    "cpu": 0.25,
    "memory": "512MiB",
}
OPTIONS = {"spec": "slice-8g", "image": "lab"}


class Hung:
    """Accepts connections on ``port`` and never answers."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(256)
        self.held: list[socket.socket] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


def pool(hub: Hub, method: str, path: str) -> requests.Response:
    return requests.request(
        method,
        f"{hub.pool}{path}",
        headers={"Authorization": f"token {hub.automation_token}"},
        timeout=60,
    )


def samples(hub: Hub, prefix: str, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = spawn_once(hub, f"{prefix}{i:03d}", OPTIONS)
        print(f"{prefix} sample {i:3d}: {t * 1000:8.0f} ms", flush=True)
        out.append(t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=8, help="spawns on node-a per phase")
    ap.add_argument("--servers", type=int, default=10, help="servers on the node that hangs")
    args = ap.parse_args()

    ensure_docker_installed()
    engines = start_engines(["node-a", "node-b"], tls_for=["node-b"])
    hub: Hub | None = None
    hung: Hung | None = None
    try:
        ensure_image(engines.values())
        cat = write_engine_catalog(
            Path(tempfile.mkdtemp(prefix="gpupool-bench-")), engines, specs=[SPEC]
        )
        hub = Hub(cat).start()
        pool(hub, "POST", "/nodes/node-a/drain")
        for i in range(args.servers):
            user = f"held{i:03d}"
            token = hub.user_token(user)
            spawn(hub, user, token, OPTIONS)
            wait_ready(hub, user, token)
        print(f"{args.servers} servers on node-b", flush=True)
        pool(hub, "POST", "/nodes/node-a/undrain")
        pool(hub, "POST", "/nodes/node-b/drain")
        spawn_once(hub, "warmup", OPTIONS)
        healthy = samples(hub, "healthy", args.samples)

        port = engines["node-b"].tcp_port
        assert port is not None
        engines["node-b"].power_off()
        hung = Hung(port)
        time.sleep(20)  # every server on node-b polled at least once since (every 15 s)
        stuck = samples(hub, "hung", args.samples)
        print(f"connections the hung engine accepted: {hung.accepted}")

        res = {"healthy": summary(healthy), "node-b hung": summary(stuck)}
        ratio = res["node-b hung"]["median_s"] / res["healthy"]["median_s"]
        print()
        print(f"{'phase':12s} {'n':>3s} {'median':>9s} {'p90':>9s} {'min':>9s} {'max':>9s}")
        for k, r in res.items():
            print(
                f"{k:12s} {r['n']:3d} {r['median_s'] * 1000:7.0f}ms {r['p90_s'] * 1000:7.0f}ms"
                f" {r['min_s'] * 1000:7.0f}ms {r['max_s'] * 1000:7.0f}ms"
            )
        print(f"\nspawn on node-a, node-b hung / healthy (medians): {ratio:.3f} (aim: <= 1.2)")
        print("--- json ---")
        print(
            json.dumps(
                {"spawn": res, "ratio_of_medians": ratio, "servers_on_hung_node": args.servers}
            )
        )
        return 0
    finally:
        if hung is not None:
            hung.close()
        if hub is not None:
            hub.cleanup()
        stop_engines(engines)


if __name__ == "__main__":
    sys.exit(main())
