"""A server's image on its node's engine, pulled per DockerSpawner's ``pull_policy``.

The policies are DockerSpawner's: ``ifnotpresent`` pulls an image the node lacks,
``always`` pulls every time (to pick up a moved tag), ``never`` refuses to start where the
image is missing, ``skip`` does not look. Only a reference that names its registry
(``registry.example.org/lab:1``, ``127.0.0.1:5000/lab``, ``docker.io/jupyter/…``) is ever
pulled: a bare ``gpupool/singleuser`` is an image built and loaded on the node, and
pulling it would fetch whatever Docker Hub serves under that name. A pull that goes
quiet for :data:`PULL_IDLE` seconds, or lasts past :data:`PULL_DEADLINE`, fails. The pull reads the engine's progress stream in
the node's pool for pulls, and :class:`PullProgress` folds it into one line for the
spawn page ("pulling IMAGE on NODE: 12.5 of 640.0 MiB, 3 of 12 layers"), sent at most
once per interval. Concurrent starts that need the same image on the same node share
one pull. The decision and the folding are pure; :func:`ensure_image` does the I/O.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from docker import auth
from docker.errors import APIError, NotFound
from docker.utils import parse_repository_tag
from requests.exceptions import ChunkedEncodingError, RequestException

from .catalog.models import Node
from .engines import Engines

POLICIES = ("ifnotpresent", "always", "never", "skip")
Action = Literal["use", "pull", "refuse"]
MIB = 1024 * 1024
MAX_LAYERS = 512  # an image has tens; a stream naming more is not believed past this
MAX_REASON = 500  # characters of an engine's or registry's error kept in a message
PULL_IDLE = 120.0  # seconds without a word from the engine: the pull has stalled
PULL_DEADLINE = 3600.0  # seconds: no pull takes longer


class _StreamBroke(Exception):
    """The engine began the pull and its answer then broke off, stalled or garbled: the
    pull failed, the engine itself is not taken for gone (not an UNREACHABLE error)."""


class ImageUnavailable(RuntimeError):
    """The image is not on the node and cannot be pulled (policy ``never``, or the pull
    failed); the message names the image, the node and why."""


def needs_inspect(policy: str) -> bool:
    """Whether ``policy`` asks whether the node has the image before deciding."""
    return policy.lower() in ("ifnotpresent", "never")


def decide(policy: str, present: bool | None) -> Action:
    """What to do for ``policy`` when the node has the image (``present``; None: not
    asked, see :func:`needs_inspect`): use what is there, pull, or refuse to start."""
    policy = policy.lower()
    if policy not in POLICIES:
        raise ValueError(f"pull_policy {policy!r}: one of {', '.join(POLICIES)}")
    if policy == "skip":
        return "use"
    if policy == "always":
        return "pull"
    if present is None:
        raise ValueError(f"pull_policy {policy!r} decides on whether the image is present")
    if present:
        return "use"
    return "pull" if policy == "ifnotpresent" else "refuse"


def names_a_registry(reference: str) -> bool:
    """Whether ``reference`` says where to pull it from: its first part is a host (has a
    dot or a port, or is localhost), as the docker CLI reads it."""
    first, sep, _ = reference.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def split_reference(reference: str) -> tuple[str, str]:
    """(repository, tag or digest) for the engine's pull; no tag means ``latest``, as
    DockerSpawner and the docker CLI take it (``host:5000/name`` has no tag)."""
    repo, tag = parse_repository_tag(reference)
    return repo, tag or "latest"


def _bytes(value: Any) -> int:
    return value if isinstance(value, int) and 0 <= value < 1 << 50 else 0


@dataclass
class _Layer:
    got: int = 0  # bytes downloaded
    size: int = 0  # compressed size, once the engine says it (0: not yet known)
    done: bool = False
    present: bool = False  # "Already exists": nothing to download


class PullProgress:
    """Docker's pull stream, record by record, folded into one line for the spawn page.

    A record names a layer (``id``) and its ``status``: "Pulling fs layer", "Waiting",
    "Downloading" (with ``progressDetail`` current and total bytes), "Verifying
    Checksum", "Download complete", "Extracting", "Pull complete", "Already exists"; or,
    without a layer, "Digest: ..." and "Status: ..."; or ``error``. Sizes are those of the
    layers the engine has begun to download, as ``docker pull`` shows them.
    """

    def __init__(self, image: str, node: str):
        self.image = image
        self.node = node
        self.layers: dict[str, _Layer] = {}
        self.error: str | None = None
        self._lock = threading.Lock()  # records arrive in a pull thread, lines are read in the loop

    def update(self, record: Mapping[str, Any]) -> None:
        if isinstance(record, Mapping):
            with self._lock:
                self._update(record)

    def _update(self, record: Mapping[str, Any]) -> None:
        if record.get("error") or record.get("errorDetail"):
            detail = record.get("errorDetail")
            message = detail.get("message") if isinstance(detail, Mapping) else None
            self.error = str(message or record.get("error"))[:MAX_REASON]
            return
        layer_id, status = record.get("id"), record.get("status")
        if not isinstance(layer_id, str) or not isinstance(status, str):
            return
        if status.startswith("Pulling from"):  # its id is the tag, not a layer
            return
        layer = self.layers.get(layer_id[:80])
        if layer is None:
            if len(self.layers) >= MAX_LAYERS:
                return
            layer = self.layers[layer_id[:80]] = _Layer()
        detail = record.get("progressDetail")
        detail = detail if isinstance(detail, Mapping) else {}
        if status == "Downloading":
            layer.size = _bytes(detail.get("total")) or layer.size
            layer.got = min(_bytes(detail.get("current")), layer.size or 1 << 50)
        elif status in ("Verifying Checksum", "Download complete", "Extracting"):
            layer.got = layer.size
        elif status == "Pull complete":
            layer.got, layer.done = layer.size, True
        elif status == "Already exists":
            layer.done = layer.present = True

    def _snapshot(self) -> list[_Layer]:
        with self._lock:
            return [
                _Layer(lay.got, lay.size, lay.done, lay.present) for lay in self.layers.values()
            ]

    def message(self) -> str:
        line = f"pulling {self.image} on {self.node}"
        layers = self._snapshot()
        if not layers:
            return line
        done = sum(1 for lay in layers if lay.done)
        size = sum(lay.size for lay in layers)
        counts = f"{done} of {len(layers)} layers"
        if not size:
            return f"{line}: {counts}"
        got = sum(lay.got for lay in layers)
        return f"{line}: {got / MIB:.1f} of {size / MIB:.1f} MiB, {counts}"

    def fraction(self) -> float:
        """How far along, 0 to 1: by bytes once every layer to download has a size, else
        by layers done."""
        layers = self._snapshot()
        fetch = [lay for lay in layers if not lay.present]
        if fetch and all(lay.size for lay in fetch):
            return sum(lay.got for lay in fetch) / sum(lay.size for lay in fetch)
        if not layers:
            return 0.0
        return sum(1 for lay in layers if lay.done) / len(layers)


Report = Callable[[str, float], None]
_pulls: dict[tuple[Any, str, str], tuple[asyncio.Future[None], PullProgress]] = {}


async def ensure_image(
    engines: Engines,
    node: Node,
    image: str,
    policy: str,
    report: Report,
    interval: float = 1.0,
) -> None:
    """Make ``image`` present on ``node``'s engine as ``policy`` says, calling
    ``report(message, fraction)`` while it pulls (at most once per ``interval`` seconds,
    and only when the line changed). Raises :class:`ImageUnavailable`; an engine that
    does not answer raises EngineUnreachable."""
    present = None
    local_only = not names_a_registry(image)
    if local_only and policy.lower() == "always":
        policy = "never"  # never pulled: use it if the node has it
    if needs_inspect(policy):
        try:
            await engines.call(node, "inspect_image", image)
            present = True
        except NotFound:
            present = False
    action = decide(policy, present)
    if action == "use":
        return
    if action != "use" and local_only:
        raise ImageUnavailable(
            f"image {image} is not on node {node.name}, and it names no registry, so it is "
            "not pulled (that would be Docker Hub's image of that name): load it there "
            "(docker save | docker load), or name its registry in images.yaml "
            "(registry.example.org/…)"
        )
    if action == "refuse":
        raise ImageUnavailable(
            f"image {image} is not on node {node.name} and pull_policy is 'never': load it "
            "there (docker load), or allow pulls (pull_policy 'ifnotpresent')"
        )
    report(f"pulling {image} on {node.name}", 0.0)
    pull, progress = _pull(engines, node, image)
    last, shown = "", 0.0
    while not pull.done():
        # asyncio.wait: a start given up on leaves the pull running for others sharing it
        await asyncio.wait([pull], timeout=interval)
        line = progress.message()
        if line != last and not pull.done():
            shown = max(shown, progress.fraction())  # sizes come late: never shown going back
            report(line, shown)
            last = line
    try:
        pull.result()
    except APIError as e:  # the engine refused the pull: no such repository or tag, ...
        reason = str(e.explanation or e)[:MAX_REASON]
        raise ImageUnavailable(f"could not pull {image} on node {node.name}: {reason}") from None
    except _StreamBroke as e:
        raise ImageUnavailable(f"could not pull {image} on node {node.name}: {e}") from None
    if progress.error:  # the engine began, then the registry failed
        raise ImageUnavailable(f"could not pull {image} on node {node.name}: {progress.error}")
    report(f"pulled {image} on {node.name}", 1.0)


def _pull(engines: Engines, node: Node, image: str) -> tuple[asyncio.Future[None], PullProgress]:
    """The pull of ``image`` on ``node`` under way, or a new one."""
    key = (asyncio.get_running_loop(), node.name, image)
    if key in _pulls:
        return _pulls[key]
    progress = PullProgress(image, node.name)
    repo, tag = split_reference(image)

    def read(client: Any) -> None:
        # APIClient.pull streams with no read timeout: a stalled registry would hold the
        # thread for good; the same request, with one
        headers = {}
        header = auth.get_config_header(client, auth.resolve_repository_name(repo)[0])
        if header:
            headers["X-Registry-Auth"] = header
        response = client._post(
            client._url("/images/create"),
            params={"fromImage": repo, "tag": tag},
            headers=headers,
            stream=True,
            timeout=(30, PULL_IDLE),
        )
        try:
            client._raise_for_status(response)
            deadline = time.monotonic() + PULL_DEADLINE
            try:
                for record in client._stream_helper(response, decode=True):
                    progress.update(record)
                    if time.monotonic() > deadline:
                        raise _StreamBroke(f"it took more than {PULL_DEADLINE:g} s")
            except (ChunkedEncodingError, RequestException, ValueError) as e:
                what = "stalled" if "timed out" in str(e).lower() else "broke off"
                raise _StreamBroke(f"the engine's answer {what}: {str(e)[:MAX_REASON]}") from e
        finally:
            response.close()

    pull = asyncio.ensure_future(engines.using(node, read, pulls=True))
    _pulls[key] = (pull, progress)

    def forget(done: asyncio.Future[None]) -> None:
        _pulls.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: every sharer reads it from the future itself

    pull.add_done_callback(forget)
    return pull, progress
