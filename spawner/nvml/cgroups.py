"""Which container a GPU process is in, and the gpupool labels of that container.

NVML names the processes on a GPU by PID. ``/proc/<pid>/cgroup`` says which cgroup the
process is in, and container engines name their cgroups after the container id:

- cgroup v1, Docker with the cgroupfs driver: ``4:memory:/docker/<64 hex>``;
- systemd driver (v1 or v2): ``0::/system.slice/docker-<64 hex>.scope``;
- containerd's CRI plugin with the systemd driver: ``.../cri-containerd-<64 hex>.scope``.

Anything else (a login session, a system service, a Kubernetes pod under the cgroupfs
driver) is "no container".

The parser is pure (text in, id out); ``container_of_pid`` reads the file under a proc
root, so that an agent in a container can read the host's ``/proc`` mounted elsewhere.
``LabelCache`` maps a container id to its labels through a lookup function (the node's
Docker engine in production, a stub in tests) and remembers the answers.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

# the agent's logger, as before NVML reading left the agent: its app sends it to the console
log = logging.getLogger("gpupool.agent")

# In order of preference; each captures the id. Anchored on path separators so that a
# name merely containing "docker" does not match.
_PATTERNS = (
    re.compile(r"(?:^|/)docker-([0-9a-f]{64})\.scope(?:/|$)"),
    re.compile(r"(?:^|/)docker/([0-9a-f]{64})(?:/|$)"),
    re.compile(r"(?:^|/)cri-containerd-([0-9a-f]{64})\.scope(?:/|$)"),
)

LABEL_PREFIX = "io.gpupool."
LABEL_KEYS = ("owner", "reservation", "server", "kind")


def container_id_from_cgroup(text: str) -> str | None:
    """The container id in the text of a ``/proc/<pid>/cgroup`` file, or None.

    Lines are ``hierarchy-id:controllers:path``; the cgroup v2 line (``0::path``) is
    looked at first, then the v1 lines in order. Within a path the outermost container
    wins: docker-in-docker nests ``/docker/<outer>/docker/<inner>``, and the agent asks
    the node's own engine, which knows the outer one.
    """
    paths: list[str] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            paths.insert(0, parts[2])
        else:
            paths.append(parts[2])
    for path in paths:
        best: tuple[int, str] | None = None
        for pattern in _PATTERNS:
            m = pattern.search(path)
            if m and (best is None or m.start() < best[0]):
                best = (m.start(), m.group(1))
        if best:
            return best[1]
    return None


def container_of_pid(pid: int, proc_root: str | Path = "/proc") -> str | None:
    """The container id of process ``pid``, None if it is in none or cannot be read (gone,
    another PID namespace, no permission)."""
    try:
        # plain os calls: this runs for every GPU process in every sample, and pathlib
        # took most of a sample's CPU
        fd = os.open(f"{os.fspath(proc_root)}/{int(pid)}/cgroup", os.O_RDONLY)
        try:
            data = os.read(fd, 65536)
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return None
    return container_id_from_cgroup(data.decode("utf-8", "replace"))


# -- labels ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContainerLabels:
    owner: str | None = None
    reservation: str | None = None
    server: str | None = None
    kind: str | None = None

    @classmethod
    def from_labels(cls, labels: Mapping[str, str] | None) -> ContainerLabels:
        labels = labels or {}
        return cls(*(labels.get(LABEL_PREFIX + k) for k in LABEL_KEYS))


NO_LABELS = ContainerLabels()

# Returns the container's labels, None when the engine does not know the container;
# raises when the engine cannot be asked.
LabelLookup = Callable[[str], Mapping[str, str] | None]


class LabelCache:
    """Container id -> gpupool labels, asked of ``lookup`` once per container.

    A container's labels never change, so an answer is kept for as long as the container
    is seen. A miss (unknown container, or the engine failed) is asked again at most every
    ``retry`` seconds per id, so a node with many unlabelled processes or a dead engine
    does not turn every sample into engine calls. Ids unseen for ``forget`` seconds are
    dropped. Thread-safe.
    """

    def __init__(
        self,
        lookup: LabelLookup,
        *,
        retry: float = 10.0,
        forget: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lookup = lookup
        self.retry = retry
        self.forget = forget
        self.clock = clock
        self._found: dict[str, ContainerLabels] = {}
        self._missed: dict[str, float] = {}  # id -> when it was last asked
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._last_error = ""
        self.lookups = 0

    def get(self, container_id: str) -> ContainerLabels | None:
        """The labels, or None while they are not known (never raises)."""
        now = self.clock()
        with self._lock:
            self._seen[container_id] = now
            hit = self._found.get(container_id)
            if hit is not None:
                return hit
            asked = self._missed.get(container_id)
            if asked is not None and now - asked < self.retry:
                return None
            self._missed[container_id] = now
        self.lookups += 1
        try:
            labels = self.lookup(container_id)
        except Exception as e:  # an engine problem must never break a sample
            msg = f"{type(e).__name__}: {e}"
            if msg != self._last_error:
                log.warning("container labels: the engine did not answer (%s)", msg)
                self._last_error = msg
            return None
        self._last_error = ""
        if labels is None:
            return None
        found = ContainerLabels.from_labels(labels)
        with self._lock:
            self._found[container_id] = found
            self._missed.pop(container_id, None)
        return found

    def prune(self) -> None:
        cutoff = self.clock() - self.forget
        with self._lock:
            for cid in [c for c, t in self._seen.items() if t < cutoff]:
                self._seen.pop(cid, None)
                self._found.pop(cid, None)
                self._missed.pop(cid, None)


def docker_label_lookup(base_url: str, timeout: float = 5.0) -> LabelLookup:
    """A lookup asking the Docker engine at ``base_url`` (the docker SDK, API 1.41)."""
    import docker  # the agent extra; imported here so that the rest works without it
    import docker.errors

    client: list[docker.DockerClient] = []

    def lookup(container_id: str) -> Mapping[str, str] | None:
        if not client:
            client.append(docker.DockerClient(base_url=base_url, version="1.41", timeout=timeout))
        try:
            info = client[0].api.inspect_container(container_id)
        except docker.errors.NotFound:
            return None
        return (info.get("Config") or {}).get("Labels") or {}

    return lookup
