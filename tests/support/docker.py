"""Real Docker engines and images for the tests, with no image registry.

Each :class:`Engine` is its own ``dockerd`` (one per pool node): its own unix socket,
data-root, exec-root, pidfile and containerd, no bridge and no iptables (containers use host
networking), and optionally a TCP+TLS listener on 127.0.0.1 with certificates made by
``deploy/engine-tls.sh``. Data-roots persist under ``/var/lib/gpupool-test/<name>`` so that
loaded images survive between test runs; sockets and exec-roots are per run and short (the
unix socket path limit is about 100 characters).

Typical use::

    ensure_docker_installed()
    engines = start_engines(["node-a", "node-b"], tls_for={"node-b"})
    try:
        ensure_image(engines.values())          # tests.support.images: the single-user image
        client = engines["node-b"].client()     # docker.DockerClient over TCP+TLS
        ...
    finally:
        stop_engines(engines)

A system dockerd on /var/run/docker.sock, if any, is never touched.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ports import free_base_port

if TYPE_CHECKING:
    import docker

REPO = Path(__file__).resolve().parents[2]
SINGLEUSER_TAG = "gpupool/singleuser:latest"
BASE_TAG = "gpupool/base:bookworm"
BUILD_SH = REPO / "images" / "build.sh"
TLS_SH = REPO / "deploy" / "engine-tls.sh"
HASH_LABEL = "org.gpupool.build-hash"
SYSTEM_SOCKET = "/var/run/docker.sock"

#: Persistent state (data-roots, last logs) of the test engines.
STATE_ROOT = Path(os.environ.get("GPUPOOL_TEST_DOCKER_ROOT", "/var/lib/gpupool-test"))


# --------------------------------------------------------------------------- installation

_apt_updated = False


def _apt_install(*packages: str) -> None:
    global _apt_updated
    if os.geteuid() != 0:
        raise RuntimeError(
            f"missing {' '.join(packages)}; as root: apt-get install -y {' '.join(packages)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
        _apt_updated = True
    r = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        env=env,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise RuntimeError(f"apt-get install {' '.join(packages)} failed:\n{r.stdout}{r.stderr}")


def ensure_docker_installed() -> None:
    """Install Debian's docker.io (dockerd, containerd, runc), debootstrap and openssl if
    any of them is missing."""
    missing = []
    if not shutil.which("dockerd") or not shutil.which("docker"):
        missing.append("docker.io")
    if not shutil.which("debootstrap"):
        missing.append("debootstrap")
    if not shutil.which("openssl"):
        missing.append("openssl")
    if missing:
        _apt_install(*missing)


def docker_cli() -> str:
    """The docker CLI the helpers and the image scripts use (``$GPUPOOL_DOCKER`` or PATH)."""
    cli = os.environ.get("GPUPOOL_DOCKER") or shutil.which("docker")
    if not cli:
        raise RuntimeError("no docker CLI; ensure_docker_installed() installs docker.io")
    return cli


def system_docker_running(socket_path: str = SYSTEM_SOCKET) -> bool:
    """Whether a (system) dockerd answers on /var/run/docker.sock. The helpers never use
    or disturb it; this is for tests that want to say so."""
    if not os.path.exists(socket_path):
        return False
    r = subprocess.run(
        [docker_cli(), "-H", f"unix://{socket_path}", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return r.returncode == 0


def docker_client(base_url: str, *, tls: Any = None, timeout: int = 120) -> docker.DockerClient:
    """A ``docker.DockerClient`` that ignores the environment (``trust_env = False``).

    docker-py talks HTTP through requests, and requests lets REQUESTS_CA_BUNDLE /
    CURL_CA_BUNDLE (set on this machine) replace the ``ca_cert`` of a ``TLSConfig``: TLS to
    an engine with its own CA then fails with CERTIFICATE_VERIFY_FAILED. The API version is
    negotiated here (``version="auto"`` would ask the engine before we can switch that off).
    """
    import docker

    probe = docker.APIClient(base_url=base_url, tls=tls, version="1.24", timeout=timeout)
    probe.trust_env = False
    try:
        version = probe.version(api_version=False)["ApiVersion"]
    except Exception as e:  # as docker-py's own version="auto" reports it
        raise docker.errors.DockerException(f"Error while fetching server API version: {e}") from e
    finally:
        probe.close()
    client = docker.DockerClient(base_url=base_url, tls=tls, version=version, timeout=timeout)
    client.api.trust_env = False
    return client


# --------------------------------------------------------------------------- processes


def _pids_mentioning(*needles: str) -> list[int]:
    """Processes whose command line contains one of ``needles`` (dockerd, containerd and
    shims of one engine all name its exec-root)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in cmd for n in needles):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:\tZ") for line in f)
    except OSError:
        return False


def _descendants(roots: Iterable[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _unmount_under(*prefixes: Path) -> None:
    """Lazily unmount every mount point under the given folders (overlay merged dirs,
    container shm, network namespaces), deepest first."""
    targets = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mp = line.split()[4].encode().decode("unicode_escape")
            if any(mp == str(p) or mp.startswith(f"{p}/") for p in prefixes):
                targets.append(mp)
    for mp in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


# --------------------------------------------------------------------------- engines


class Engine:
    """One dockerd of our own (a pool node).

    ``name`` picks the persistent data-root ``STATE_ROOT/<name>``; ``tls=True`` adds a
    ``tcp://127.0.0.1:<port>`` listener with ``--tlsverify`` (certificates in
    :attr:`tls_dir`: ca.pem, cert.pem, key.pem for clients). ``clean=True`` removes the
    containers and volumes a previous run left in the data-root (images are kept).
    ``iptables=True``: the engine manages iptables, so that the networks it makes can
    isolate their containers (a network with inter-container communication off needs it);
    still no default bridge.
    """

    def __init__(
        self,
        name: str,
        *,
        tls: bool = False,
        tcp_port: int | None = None,
        data_root: Path | str | None = None,
        storage_driver: str | None = None,
        clean: bool = True,
        start_timeout: float = 60.0,
        live_restore: bool = False,
        iptables: bool = False,
    ) -> None:
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"engine name must be alphanumeric with - or _: {name!r}")
        self.name = name
        self.tls = tls
        self.tcp_port = tcp_port
        self.data_root = Path(data_root) if data_root else STATE_ROOT / name
        self.storage_driver = storage_driver
        self.clean = clean
        self.start_timeout = start_timeout
        self.live_restore = live_restore
        self.iptables = iptables
        self.run_dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None
        self._lock_fd: int | None = None
        self._log_file: Any = None
        self._clients: list[docker.DockerClient] = []

    # paths and urls -------------------------------------------------------------------
    def _need_run_dir(self) -> Path:
        if self.run_dir is None:
            raise RuntimeError(f"engine {self.name} is not started")
        return self.run_dir

    @property
    def socket(self) -> Path:
        return self._need_run_dir() / "docker.sock"

    @property
    def exec_root(self) -> Path:
        return self._need_run_dir() / "x"

    @property
    def log_path(self) -> Path:
        return self._need_run_dir() / "dockerd.log"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def tcp_url(self) -> str | None:
        return f"tcp://127.0.0.1:{self.tcp_port}" if self.tls else None

    @property
    def tls_dir(self) -> Path | None:
        """Client certificates (ca.pem, cert.pem, key.pem), as DOCKER_CERT_PATH wants them."""
        return self._need_run_dir() / "tls" if self.tls else None

    @property
    def url(self) -> str:
        """The URL a remote client (the hub) would use: TCP+TLS if enabled, else unix."""
        return self.tcp_url or self.unix_url

    def tls_config(self) -> dict[str, str] | None:
        """The node's ``tls:`` entry for the catalog (paths to ca, cert, key)."""
        d = self.tls_dir
        if d is None:
            return None
        return {"ca": str(d / "ca.pem"), "cert": str(d / "cert.pem"), "key": str(d / "key.pem")}

    def cli_env(self, *, over_tcp: bool = False) -> dict[str, str]:
        """Environment for the docker CLI / scripts to reach this engine."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        if over_tcp and self.tls:
            env.update(
                DOCKER_HOST=str(self.tcp_url),
                DOCKER_TLS_VERIFY="1",
                DOCKER_CERT_PATH=str(self.tls_dir),
            )
        else:
            env["DOCKER_HOST"] = self.unix_url
        return env

    def docker(
        self, *args: str, check: bool = True, over_tcp: bool = False, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this engine; returns the completed process (text)."""
        kw.setdefault("capture_output", True)
        r = subprocess.run(
            [docker_cli(), *args], env=self.cli_env(over_tcp=over_tcp), text=True, **kw
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} on {self.name}: {r.stderr or r.stdout}")
        return r

    def client(self, *, over_tcp: bool | None = None, timeout: int = 120) -> docker.DockerClient:
        """A ``docker.DockerClient`` for this engine: over TCP+TLS (client certificate)
        when the engine has TLS, unless ``over_tcp=False``; else over the unix socket."""
        import docker

        use_tcp = self.tls if over_tcp is None else over_tcp
        kw: dict[str, Any] = {"base_url": self.unix_url}
        if use_tcp:
            if not self.tls:
                raise ValueError(f"engine {self.name} has no TCP listener (tls=False)")
            d = self.tls_dir
            assert d is not None
            kw = {
                "base_url": self.tcp_url,
                "tls": docker.tls.TLSConfig(
                    client_cert=(str(d / "cert.pem"), str(d / "key.pem")),
                    ca_cert=str(d / "ca.pem"),
                    verify=True,
                ),
            }
        c = docker_client(timeout=timeout, **kw)
        self._clients.append(c)
        return c

    # lifecycle -------------------------------------------------------------------------
    def _acquire(self) -> None:
        STATE_ROOT.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)
        lock_path = self.data_root.parent / f"{self.data_root.name}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(
                f"engine {self.name}: {self.data_root} is in use by another live test session"
            ) from None
        self._lock_fd = fd

    def _state_file(self) -> Path:
        return self.data_root.parent / f"{self.data_root.name}.run"

    def _reap_previous_run(self) -> None:
        """A run that was killed (SIGKILL, power) can leave its dockerd, containerd, shims,
        containers and mounts behind. We hold the lock, so none of that is alive on purpose."""
        state = self._state_file()
        try:
            prev = json.loads(state.read_text())
        except (OSError, ValueError):
            prev = None
        needles = [f"--data-root {self.data_root} ", f"--data-root={self.data_root} "]
        if prev:
            needles.append(prev["run_dir"] + "/")
        pids = _pids_mentioning(*needles)
        if pids:
            _kill_all(_descendants(pids))
            time.sleep(0.5)
        _unmount_under(self.data_root, *([Path(prev["run_dir"])] if prev else []))
        if prev and prev["run_dir"].startswith("/tmp/gp-"):
            shutil.rmtree(prev["run_dir"], ignore_errors=True)
        state.unlink(missing_ok=True)

    def _driver_file(self) -> Path:
        return self.data_root / ".gpupool-storage-driver"

    def start(self) -> Engine:
        if self.proc is not None:
            return self
        if os.geteuid() != 0:
            raise RuntimeError("the test engines run dockerd, which needs root")
        ensure_docker_installed()
        t0 = time.monotonic()
        self._acquire()
        try:
            self._reap_previous_run()
            self.run_dir = Path(tempfile.mkdtemp(prefix="gp-", dir="/tmp"))
            self._state_file().write_text(json.dumps({"run_dir": str(self.run_dir)}))
            if self.tls:
                if self.tcp_port is None:
                    self.tcp_port = free_base_port((0,))
                subprocess.run(
                    ["bash", str(TLS_SH), str(self.run_dir / "tls"), "127.0.0.1", "localhost"],
                    check=True,
                    capture_output=True,
                )
            drivers = [self.storage_driver] if self.storage_driver else []
            if not drivers:
                with contextlib.suppress(OSError):
                    drivers.append(self._driver_file().read_text().strip())
                drivers += [d for d in ("overlay2", "vfs") if d not in drivers]
            errors = []
            for driver in drivers:
                try:
                    self._launch(driver)
                except RuntimeError as e:
                    errors.append(f"[{driver}] {e}")
                    self._terminate()
                    continue
                self.storage_driver = driver
                self._driver_file().write_text(driver)
                break
            else:
                raise RuntimeError(f"dockerd {self.name} did not start:\n" + "\n".join(errors))
            if self.clean:
                self._remove_leftovers()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        atexit.register(self.stop)
        return self

    def _launch(self, driver: str) -> None:
        run = self._need_run_dir()
        # never /etc/docker/daemon.json; and the key the engine ID (docker info) comes from
        # in the data-root: by default it is /etc/docker/key.json, one for all engines
        config: dict[str, Any] = {"deprecated-key-path": str(self.data_root / "key.json")}
        if self.live_restore:  # containers keep running while dockerd is away
            config["live-restore"] = True
        (run / "daemon.json").write_text(json.dumps(config) + "\n")
        args = [
            shutil.which("dockerd") or "dockerd",
            "--config-file", str(run / "daemon.json"),
            "--host", self.unix_url,
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(run / "docker.pid"),
            "--storage-driver", driver,
            "--bridge", "none",
            f"--iptables={'true' if self.iptables else 'false'}",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--shutdown-timeout", "5",
            # if a system containerd runs, dockerd uses it: keep our engines apart there
            "--containerd-namespace", f"gp-{self.name}",
            "--containerd-plugins-namespace", f"gp-{self.name}-plugins",
        ]  # fmt: skip
        if self.tls:
            tls = run / "tls"
            args += [
                "--host", str(self.tcp_url),
                "--tlsverify",
                f"--tlscacert={tls / 'ca.pem'}",
                f"--tlscert={tls / 'server-cert.pem'}",
                f"--tlskey={tls / 'server-key.pem'}",
            ]  # fmt: skip
        if self._log_file is None:
            self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"=== {' '.join(args)}\n".encode())
        self._log_file.flush()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # ^C in pytest must not kill it before stop()
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"dockerd exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if self.socket.exists():
                r = subprocess.run(
                    [docker_cli(), "-H", self.unix_url, "info", "--format", "{{.Driver}}"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                if r.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"dockerd did not answer within {self.start_timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _remove_leftovers(self) -> None:
        r = self.docker("ps", "-aq")
        ids = r.stdout.split()
        if ids:
            self.docker("rm", "-f", "-v", *ids)
        self.docker("volume", "prune", "-f", check=False)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, RuntimeError):
            return "(no log)"

    def _terminate(self) -> None:
        """Stop dockerd (SIGTERM, wait, SIGKILL) and everything it left running."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self.run_dir is not None:
            # managed containerd, shims and their containers name our exec-root
            leftovers = _pids_mentioning(f"{self.run_dir}/")
            if leftovers:
                _kill_all(_descendants(leftovers))
                time.sleep(0.2)

    def crash(self) -> None:
        """SIGKILL dockerd alone, as a crash would; its containers, shims and folders stay
        (with ``live_restore`` the containers keep running). :meth:`restart` brings it back."""
        proc, self.proc = self.proc, None
        if proc is None:
            raise RuntimeError(f"engine {self.name} is not running")
        proc.kill()
        proc.wait(timeout=30)

    def power_off(self) -> None:
        """SIGKILL dockerd, containerd, the shims and every container of this engine, as a
        node losing power would; the folders stay. :meth:`restart` brings it back (its
        containers then show as exited)."""
        proc, self.proc = self.proc, None
        if proc is None:
            raise RuntimeError(f"engine {self.name} is not running")
        pids = _descendants([proc.pid, *_pids_mentioning(f"{self.run_dir}/")])
        _kill_all(pids)
        proc.wait(timeout=30)
        time.sleep(0.2)

    def restart(self) -> None:
        """Start dockerd again on the same folders after :meth:`crash` or :meth:`power_off`."""
        if self.proc is not None:
            raise RuntimeError(f"engine {self.name} still runs")
        for c in self._clients:
            with contextlib.suppress(Exception):
                c.close()
        self._clients.clear()
        with contextlib.suppress(OSError):
            self.socket.unlink()
        # containerd, started by dockerd, died with it (SIGPIPE on dockerd's pipe) and may
        # linger as a zombie: dockerd would take its pid file for a live containerd and wait
        # for it forever. A fresh containerd finds the shims, which kept the containers.
        pid_file = self.exec_root / "containerd" / "containerd.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            if not _alive(pid):
                pid_file.unlink()
        self._launch(self.storage_driver or "overlay2")

    def stop(self) -> None:
        """Stop dockerd, unmount what it left, remove the per-run folders (socket,
        exec-root, certificates); the data-root stays. The last log is kept in
        STATE_ROOT/<name>.log. Safe to call twice."""
        for c in self._clients:
            with contextlib.suppress(Exception):
                c.close()
        self._clients.clear()
        self._terminate()
        run = self.run_dir
        if run is not None:
            _unmount_under(run, self.data_root)
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            with contextlib.suppress(OSError):
                shutil.copyfile(run / "dockerd.log", self.data_root.parent / f"{self.name}.log")
            shutil.rmtree(run, ignore_errors=True)
            self.run_dir = None
        with contextlib.suppress(OSError):
            self._state_file().unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Engine({self.name!r}, url={self.url if self.run_dir else None!r})"


def start_engines(
    names: Iterable[str], tls_for: Iterable[str] = (), **kw: Any
) -> dict[str, Engine]:
    """Start one engine per name (``tls_for``: those that also listen on TCP+TLS).
    Returns ``{name: Engine}`` in order; on failure the ones already started are stopped."""
    tls_names = set(tls_for)
    engines: dict[str, Engine] = {}
    try:
        for name in names:
            engines[name] = Engine(name, tls=name in tls_names, **kw).start()
    except BaseException:
        stop_engines(engines)
        raise
    return engines


def stop_engines(engines: Mapping[str, Engine] | Iterable[Engine]) -> None:
    items = engines.values() if isinstance(engines, Mapping) else engines
    for e in list(items):
        e.stop()
