#!/usr/bin/env python
"""SSH benchmark: what gpupool's WebSocket transport costs an ssh session (issue 23),
against OpenSSH alone, measured in the same run.

Run from the repository root::

    .venv/bin/python tests/bench/bench_ssh.py            # 20 setups, 64 MiB, 200 round trips
    .venv/bin/python tests/bench/bench_ssh.py --quick    # 5 setups, 16 MiB, 50 round trips

Both paths use this machine's sshd (the same binary, configuration and host key: the
configuration is what gpupool.lab.ssh writes) and OpenSSH's ssh and scp clients with the
same options; only the ProxyCommand differs:

- gpupool: a real ``jupyter server`` with the gpupool.lab server extension on 127.0.0.1
  (its own token); the ProxyCommand is ``python -m gpupool.sshproxy ws://…/gpupool/ssh``,
  and the extension runs ``sshd -i`` for each WebSocket and carries its bytes;
- baseline: the ProxyCommand is ``sshd -i`` itself (inetd mode on the ProxyCommand's
  pipes): no WebSocket, proxy or jupyter-server, so the ratio isolates gpupool's transport.

Measured, the two paths taking turns:

- setup: the wall time of ``ssh host true`` (median and p90);
- throughput inside one session, after it is set up: SIZE bytes from the client to a
  remote ``head -c SIZE > /dev/null`` (up) and from a remote ``head -c SIZE /dev/zero``
  (down), MiB/s, best of ``--tries``;
- scp: ``scp`` of a SIZE file of random bytes to the server and back, the whole command
  (connection included, SFTP protocol), MiB/s, best of ``--tries``;
- interactive: one session runs ``cat``; the client writes a 32-byte line and waits for its
  echo, ``--round-trips`` times (median and p90);
- proxy start: ``python -m gpupool.sshproxy --help``, the interpreter's start that every
  gpupool connection pays before its WebSocket (informative; no baseline).

The server's sshd folder is the user's real ``~/.gpupool/ssh`` (sshd's StrictModes wants
it under the passwd home); it is removed afterwards if the run made it. The jupyter-server,
the sshd processes it started and every client are ended on the way out, failure or not.
Prints a table, then ``--- json ---`` and one JSON object per measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import pwd
import secrets
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gpupool.lab.ssh import SshServer, _quoted

MiB = 1024 * 1024
PATHS = ("gpupool", "baseline")


class Failed(Exception):
    """A step of the benchmark did not work; the message says which."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_until(fd: int, marker: bytes, deadline: float) -> bytes:
    """Bytes from ``fd`` up to and including ``marker``, one at a time (nothing after it is
    consumed); Failed at the deadline or at the end of the stream."""
    got = b""
    while not got.endswith(marker):
        got += read_some(fd, 1, deadline)
    return got


def read_some(fd: int, most: int, deadline: float) -> bytes:
    left = deadline - time.monotonic()
    if left <= 0 or not select.select([fd], [], [], left)[0]:
        raise Failed("no answer from the session in time")
    chunk = os.read(fd, most)
    if not chunk:
        raise Failed("the session ended early")
    return chunk


def write_all(fd: int, data: memoryview, deadline: float) -> None:
    while data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([], [fd], [], left)[1]:
            raise Failed("the session took no more input in time")
        data = data[os.write(fd, data[: 1 << 20]) :]


class Bench:
    """The client side: keys, token, both paths' ssh options, and every process started."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.client = work / "client"
        self.client.mkdir()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.jupyter: subprocess.Popen[bytes] | None = None
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.server_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("JUPYTERHUB_", "GPUPOOL_", "JUPYTER_"))
        }
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.client / "id")],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        self.pubkey = (self.client / "id.pub").read_text().strip()
        self.options: dict[str, list[str]] = {}

    def common(self, name: str, proxy: str) -> list[str]:
        return [
            "-F", "/dev/null",
            "-o", f"ProxyCommand={proxy.replace('%', '%%')}",  # ssh expands %-tokens
            "-o", f"IdentityFile={self.client / 'id'}",
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no",
            "-o", f"UserKnownHostsFile={self.client / f'known_hosts-{name}'}",
            "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=30",
            "-o", f"User={self.user}",
        ]  # fmt: skip

    def baseline(self) -> None:
        """sshd -i as the ProxyCommand, with the configuration gpupool.lab.ssh writes."""
        server = SshServer(report=None)
        self.baseline_runtime = server.runtime
        config = server.prepare(self.server_env)
        # not key-*: the extension's prepare removes those after 5 minutes
        self.baseline_keys = server.folder / f"bench-authorized-{secrets.token_hex(4)}"
        self.baseline_keys.write_text(self.pubkey + "\n")
        self.baseline_keys.chmod(0o600)
        keys = f"AuthorizedKeysFile {_quoted(str(self.baseline_keys))}"
        proxy = shlex.join([server.sshd, "-i", "-e", "-f", str(config), "-o", keys])
        self.options["baseline"] = self.common("baseline", proxy)

    def start_jupyter(self) -> None:
        """A jupyter-server with gpupool.lab on loopback; the gpupool path's options."""
        port, token = free_port(), secrets.token_hex(24)
        jdir = self.work / "jupyter"
        (jdir / "config").mkdir(parents=True)
        (jdir / "tmp").mkdir()  # the extension's sshd configurations: removed with work
        app = {"jpserver_extensions": {"gpupool.lab": True}, "allow_root": True}
        app.update(open_browser=False, root_dir=str(self.work))
        (jdir / "config" / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": app}))
        env = dict(self.server_env)
        env.update(
            JUPYTER_TOKEN=token,
            JUPYTER_CONFIG_DIR=str(jdir / "config"),
            JUPYTER_DATA_DIR=str(jdir / "data"),
            JUPYTER_RUNTIME_DIR=str(jdir / "runtime"),
            TMPDIR=str(jdir / "tmp"),
        )
        jupyter = Path(sys.executable).parent / "jupyter"
        self.jupyter_log = jdir / "server.log"
        with open(self.jupyter_log, "wb") as log:
            self.jupyter = subprocess.Popen(
                [str(jupyter), "server", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"token {token}"}
        )
        while True:
            if self.jupyter.poll() is not None:
                raise Failed(f"jupyter-server exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise Failed(f"jupyter-server did not answer in 90 s:\n{self.log_tail()}")
            time.sleep(0.3)
        token_file = self.client / "token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        self.proxy = [sys.executable, "-m", "gpupool.sshproxy"]
        url, key = f"ws://127.0.0.1:{port}/gpupool/ssh", str(self.client / "id.pub")
        proxy = shlex.join([*self.proxy, url, "--token-file", str(token_file), "--key", key])
        self.options["gpupool"] = self.common("gpupool", proxy)

    def log_tail(self) -> str:
        return self.jupyter_log.read_text(errors="replace")[-3000:]

    # -- measurements ------------------------------------------------------------------

    def ssh(self, path: str, command: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
        r = subprocess.run(
            ["ssh", *self.options[path], "server", command],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
            **kw,
        )
        if r.returncode != 0:
            raise Failed(f"{path}: ssh {command!r}: {r.returncode}: {r.stderr.decode()[-800:]}")
        return r

    def setup(self, path: str) -> float:
        t0 = time.perf_counter()
        self.ssh(path, "true")
        return time.perf_counter() - t0

    @contextlib.contextmanager
    def session(self, path: str, command: str) -> Iterator[subprocess.Popen[bytes]]:
        """A running ``ssh host command`` with pipes both ways; ended on the way out."""
        p = subprocess.Popen(
            ["ssh", *self.options[path], "server", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        self.procs.append(p)
        try:
            yield p
        finally:
            with contextlib.suppress(OSError):
                p.stdin.close()  # type: ignore[union-attr]
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            p.stdout.close()  # type: ignore[union-attr]
            self.procs.remove(p)

    def upload(self, path: str, data: bytes) -> float:
        with self.session(path, f"echo ready; head -c {len(data)} > /dev/null; echo done") as p:
            wfd, rfd = p.stdin.fileno(), p.stdout.fileno()  # type: ignore[union-attr]
            read_until(rfd, b"ready\n", time.monotonic() + 60)
            t0 = time.perf_counter()
            write_all(wfd, memoryview(data), time.monotonic() + 300)
            read_until(rfd, b"done\n", time.monotonic() + 300)
            return len(data) / MiB / (time.perf_counter() - t0)

    def download(self, path: str, size: int) -> float:
        with self.session(path, f"echo ready; read go; head -c {size} /dev/zero") as p:
            wfd, rfd = p.stdin.fileno(), p.stdout.fileno()  # type: ignore[union-attr]
            read_until(rfd, b"ready\n", time.monotonic() + 60)
            t0 = time.perf_counter()
            os.write(wfd, b"go\n")
            deadline, got = time.monotonic() + 300, 0
            while got < size:
                got += len(read_some(rfd, 1 << 20, deadline))
            return size / MiB / (time.perf_counter() - t0)

    def scp(self, path: str, src: Path, up: bool) -> float:
        remote = self.work / f"remote-{path}.bin"
        back = self.work / f"back-{path}.bin"
        args = [str(src), f"server:{remote}"] if up else [f"server:{remote}", str(back)]
        t0 = time.perf_counter()
        r = subprocess.run(
            ["scp", "-q", *self.options[path], *args],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=300,
        )
        took = time.perf_counter() - t0
        if r.returncode != 0:
            raise Failed(f"{path}: scp: {r.stderr.decode()[-800:]}")
        if not up and back.read_bytes() != src.read_bytes():
            raise Failed(f"{path}: scp brought back other bytes")
        return src.stat().st_size / MiB / took

    def round_trips(self, path: str, n: int) -> list[float]:
        with self.session(path, "echo ready; exec cat") as p:
            wfd, rfd = p.stdin.fileno(), p.stdout.fileno()  # type: ignore[union-attr]
            read_until(rfd, b"ready\n", time.monotonic() + 60)
            out = []
            for i in range(n + 10):  # the first 10 warm up
                line = f"{i:031d}\n".encode()
                t0 = time.perf_counter()
                os.write(wfd, line)
                got = b""
                while len(got) < len(line):
                    got += read_some(rfd, 4096, time.monotonic() + 30)
                took = time.perf_counter() - t0
                if got != line:
                    raise Failed(f"{path}: echo {got!r} for {line!r}")
                if i >= 10:
                    out.append(took)
            return out

    def proxy_start(self) -> float:
        t0 = time.perf_counter()
        subprocess.run([*self.proxy, "--help"], capture_output=True, check=True, timeout=60)
        return time.perf_counter() - t0

    # -- cleanup -----------------------------------------------------------------------

    def close(self) -> None:
        for p in list(self.procs):
            with contextlib.suppress(OSError):
                p.kill()
                p.wait(10)
        if self.jupyter is not None and self.jupyter.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.jupyter.pid, signal.SIGTERM)
            try:
                self.jupyter.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.jupyter.pid, signal.SIGKILL)
                self.jupyter.wait()
        # sshd processes the extension started (their own sessions) that outlived it:
        # those whose command line names this run's folder
        for pid in leftover_pids(str(self.work)):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if getattr(self, "baseline_keys", None) is not None:
            self.baseline_keys.unlink(missing_ok=True)
        if getattr(self, "baseline_runtime", None) is not None:
            shutil.rmtree(self.baseline_runtime, ignore_errors=True)


def leftover_pids(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
    return found


def summary(values: list[float]) -> dict[str, float]:
    p90 = statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]
    return {
        "median": statistics.median(values),
        "p90": p90,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def turns(n: int, measure: Callable[[str], Any]) -> dict[str, list[Any]]:
    """``measure(path)`` n times for each path, the paths taking turns."""
    out: dict[str, list[Any]] = {p: [] for p in PATHS}
    for i in range(n):
        for path in PATHS if i % 2 == 0 else PATHS[::-1]:
            out[path].append(measure(path))
    return out


def run(a: argparse.Namespace, bench: Bench) -> list[dict[str, Any]]:
    size = a.size * MiB
    bench.baseline()
    bench.start_jupyter()
    for path in PATHS:  # the first connection adds the host key to known_hosts
        bench.ssh(path, "true")
    load0 = os.getloadavg()
    results: list[dict[str, Any]] = []

    def add(measure: str, unit: str, better: str, got: dict[str, dict[str, Any]]) -> None:
        key = "median" if better == "lower" else "best"
        ratio = got["gpupool"][key] / got["baseline"][key]
        results.append(
            {"measure": measure, "unit": unit, "better": better, **got, "ratio": round(ratio, 3)}
        )

    setups = turns(a.setups, bench.setup)
    add("setup", "s", "lower", {p: summary(v) for p, v in setups.items()})
    data = os.urandom(size)
    src = bench.work / "random.bin"
    src.write_bytes(data)
    for name, fn in (
        ("upload", lambda p: bench.upload(p, data)),
        ("download", lambda p: bench.download(p, size)),
        ("scp up", lambda p: bench.scp(p, src, up=True)),
        ("scp down", lambda p: bench.scp(p, src, up=False)),
    ):
        got = turns(a.tries, fn)
        add(name, "MiB/s", "higher", {p: {"best": max(v), "all": v} for p, v in got.items()})
    echoes = {p: bench.round_trips(p, a.round_trips) for p in PATHS}
    add("round trip", "s", "lower", {p: summary(v) for p, v in echoes.items()})
    starts = [bench.proxy_start() for _ in range(a.setups)]
    results.append({"measure": "proxy start", "unit": "s", "gpupool": summary(starts)})
    for r in results:
        r.update(size_mib=a.size, load_before=load0, load_after=os.getloadavg())
    return results


def show(results: list[dict[str, Any]], a: argparse.Namespace) -> None:
    print(
        f"{dt.date.today()}  {platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}, {subprocess.getoutput('ssh -V 2>&1')}"
    )
    print(
        f"load average before/after: {results[0]['load_before'][0]:.2f} / "
        f"{results[0]['load_after'][0]:.2f}; size {a.size} MiB, {a.setups} setups, "
        f"{a.tries} tries, {a.round_trips} round trips\n"
    )
    print(f"{'measure':<22}{'gpupool':>14}{'baseline':>14}{'ratio g/b':>11}")
    for r in results:
        if "baseline" not in r:
            g = r["gpupool"]
            print(f"{r['measure'] + ' (median)':<22}{g['median'] * 1000:>11.1f} ms{'–':>14}")
            continue
        if r["unit"] == "s":
            # a round trip is tens of microseconds: shown in µs, a setup in ms
            scale, unit = (1e6, "µs") if r["baseline"]["median"] < 1e-3 else (1e3, "ms")
            for key in ("median", "p90"):
                g, b = r["gpupool"][key] * scale, r["baseline"][key] * scale
                label = f"{r['measure']} ({key})"
                print(f"{label:<22}{g:>11.1f} {unit}{b:>11.1f} {unit}{g / b:>11.2f}")
        else:
            g, b = r["gpupool"]["best"], r["baseline"]["best"]
            label = f"{r['measure']} (best)"
            print(f"{label:<22}{g:>8.1f} MiB/s{b:>8.1f} MiB/s{g / b:>11.2f}")
    print("--- json ---")
    for r in results:
        print(json.dumps(r))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 setups, 16 MiB, 2 tries, 50 echoes")
    ap.add_argument("--setups", type=int, default=20, help="ssh host true, per path")
    ap.add_argument("--size", type=int, default=64, help="MiB carried in the throughput runs")
    ap.add_argument("--tries", type=int, default=3, help="throughput runs per path (best kept)")
    ap.add_argument("--round-trips", type=int, default=200, help="echoes of a 32-byte line")
    a = ap.parse_args()
    if a.quick:
        a.setups, a.size, a.tries, a.round_trips = 5, 16, 2, 50
    if not (os.access("/usr/sbin/sshd", os.X_OK) and shutil.which("ssh")):
        print("needs OpenSSH's server (/usr/sbin/sshd) and client (ssh, scp)", file=sys.stderr)
        return 2
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd run as root wants its privsep folder
    # a SIGTERM ends the run through the finally below (everything started is stopped)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    home_state = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".gpupool"
    made_home_state = not home_state.exists()
    work = Path(tempfile.mkdtemp(prefix="gpupool-bench-ssh-"))
    bench: Bench | None = None
    try:
        bench = Bench(work)
        results = run(a, bench)
    except Failed as e:
        print(f"bench_ssh: {e}", file=sys.stderr)
        return 1
    finally:
        if bench is not None:
            bench.close()
        shutil.rmtree(work, ignore_errors=True)
        if made_home_state:
            shutil.rmtree(home_state, ignore_errors=True)
    show(results, a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
