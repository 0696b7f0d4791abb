"""Images pulled per DockerSpawner's pull_policy (pull.py): the decision, the progress line
folded from Docker's pull stream, and ensure_image against a stand-in engine client (a
real Engines, with its thread pools and error mapping, whose client is a double)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from docker.errors import APIError, NotFound

from gpupool import pull
from gpupool.catalog.models import Node
from gpupool.engines import Engines, EngineUnreachable
from gpupool.pull import (
    MAX_LAYERS,
    ImageUnavailable,
    PullProgress,
    decide,
    ensure_image,
    needs_inspect,
    split_reference,
)

MiB = 1024 * 1024
IMAGE = "127.0.0.1:5000/lab:v1"


# -- the decision ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "present", "action"),
    [
        ("ifnotpresent", True, "use"),
        ("ifnotpresent", False, "pull"),
        ("always", None, "pull"),
        ("always", True, "pull"),
        ("never", True, "use"),
        ("never", False, "refuse"),
        ("skip", None, "use"),
        ("skip", False, "use"),
        ("IfNotPresent", False, "pull"),  # CaselessStrEnum, as DockerSpawner declares it
        ("Never", False, "refuse"),
    ],
)
def test_each_policy_decides_as_dockerspawner_does(
    policy: str, present: bool | None, action: str
) -> None:
    assert decide(policy, present) == action


def test_only_policies_that_depend_on_the_image_ask_for_it() -> None:
    assert [p for p in pull.POLICIES if needs_inspect(p)] == ["ifnotpresent", "never"]


def test_an_unknown_policy_or_a_missing_answer_is_a_bug_not_a_guess() -> None:
    with pytest.raises(ValueError, match="one of ifnotpresent, always, never, skip"):
        decide("sometimes", True)
    with pytest.raises(ValueError, match="decides on whether the image is present"):
        decide("never", None)


def test_the_policies_are_dockerspawners() -> None:
    from dockerspawner import DockerSpawner

    values = DockerSpawner.class_traits()["pull_policy"].values
    assert sorted(pull.POLICIES) == sorted(values)
    assert DockerSpawner.class_traits()["pull_policy"].default_value == "ifnotpresent"


@pytest.mark.parametrize(
    ("reference", "split"),
    [
        ("gpupool/singleuser:latest", ("gpupool/singleuser", "latest")),
        ("gpupool/singleuser", ("gpupool/singleuser", "latest")),
        ("127.0.0.1:5000/lab", ("127.0.0.1:5000/lab", "latest")),  # a port is not a tag
        ("127.0.0.1:5000/team/lab:2026.1", ("127.0.0.1:5000/team/lab", "2026.1")),
        ("registry.example/lab@sha256:" + "a" * 64, ("registry.example/lab", "sha256:" + "a" * 64)),
    ],
)
def test_references_split_into_repository_and_tag(reference: str, split: tuple[str, str]) -> None:
    assert split_reference(reference) == split


# -- the progress line ------------------------------------------------------------------


def layer(lid: str, status: str, current: int | None = None, total: int | None = None) -> dict:
    detail = {} if current is None else {"current": current, "total": total}
    return {"status": status, "progressDetail": detail, "id": lid}


def test_a_pull_reads_as_bytes_and_layers() -> None:
    p = PullProgress(IMAGE, "node-a")
    assert p.message() == f"pulling {IMAGE} on node-a" and p.fraction() == 0.0
    p.update({"status": "Pulling from lab", "id": "v1"})  # the tag, not a layer
    assert p.message() == f"pulling {IMAGE} on node-a"
    for lid in ("aaa", "bbb", "ccc"):
        p.update(layer(lid, "Pulling fs layer"))
    p.update(layer("ccc", "Already exists"))
    assert p.message() == f"pulling {IMAGE} on node-a: 1 of 3 layers"
    p.update(layer("aaa", "Downloading", 1 * MiB, 10 * MiB))
    p.update(layer("bbb", "Waiting"))
    assert p.message() == f"pulling {IMAGE} on node-a: 1.0 of 10.0 MiB, 1 of 3 layers"
    assert p.fraction() == pytest.approx(1 / 3)  # bbb's size unknown: by layers
    p.update(layer("bbb", "Downloading", 5 * MiB, 30 * MiB))
    assert p.message() == f"pulling {IMAGE} on node-a: 6.0 of 40.0 MiB, 1 of 3 layers"
    assert p.fraction() == pytest.approx(6 / 40)  # now by bytes (ccc is not fetched)
    p.update(layer("aaa", "Verifying Checksum"))
    p.update(layer("aaa", "Download complete"))
    p.update(layer("aaa", "Extracting", 3 * MiB, 10 * MiB))
    assert p.message() == f"pulling {IMAGE} on node-a: 15.0 of 40.0 MiB, 1 of 3 layers"
    p.update(layer("aaa", "Pull complete"))
    p.update(layer("bbb", "Download complete"))
    p.update(layer("bbb", "Pull complete"))
    p.update({"status": "Digest: sha256:" + "0" * 64})
    p.update({"status": f"Status: Downloaded newer image for {IMAGE}"})
    assert p.message() == f"pulling {IMAGE} on node-a: 40.0 of 40.0 MiB, 3 of 3 layers"
    assert p.fraction() == 1.0 and p.error is None


def test_an_error_record_is_kept_with_its_detail() -> None:
    p = PullProgress(IMAGE, "node-a")
    p.update({"errorDetail": {"message": "manifest unknown"}, "error": "manifest unknown (short)"})
    assert p.error == "manifest unknown"
    p = PullProgress(IMAGE, "node-a")
    p.update({"error": "x" * 10_000})
    assert p.error == "x" * pull.MAX_REASON


def test_what_the_stream_sends_is_checked_and_bounded() -> None:
    p = PullProgress(IMAGE, "node-a")
    for junk in (
        "not a record",
        None,
        {"status": 3, "id": "a"},
        {"status": "Downloading", "id": ["a"]},
        {"status": "Downloading", "id": "a", "progressDetail": "half"},
        {"status": "Downloading", "id": "b", "progressDetail": {"current": "1", "total": -5}},
        {"status": "Downloading", "id": "c", "progressDetail": {"current": 10**30, "total": 10}},
    ):
        p.update(junk)  # type: ignore[arg-type]
    assert p.message() == f"pulling {IMAGE} on node-a: 0.0 of 0.0 MiB, 0 of 3 layers"
    for i in range(MAX_LAYERS + 100):
        p.update(layer(f"l{i}", "Pulling fs layer"))
    assert len(p.layers) == MAX_LAYERS
    p = PullProgress(IMAGE, "node-a")
    p.update(layer("z" * 10_000, "Pulling fs layer"))
    p.update(layer("z" * 10_000, "Pull complete"))
    assert [len(k) for k in p.layers] == [80] and p.message().endswith(": 1 of 1 layers")


# -- ensure_image against a stand-in client ---------------------------------------------


class StandInClient:
    """The calls ensure_image makes, as docker-py's APIClient answers them: inspect_image,
    and the pull as the request under APIClient.pull (with a read timeout)."""

    _auth_configs = None  # no registry credentials
    credstore_env = None

    def __init__(self, present: bool = False, records: list[Any] | None = None, delay: float = 0):
        self.present = present
        self.records = records or []
        self.delay = delay
        self.calls: list[tuple[str, ...]] = []
        self.pull_fails: Exception | None = None
        self.lock = threading.Lock()

    def inspect_image(self, image: str) -> dict:
        self.calls.append(("inspect_image", image))
        if not self.present:
            raise NotFound(f"No such image: {image}")
        return {"Id": "sha256:1"}

    def _url(self, path: str) -> str:
        return path

    def _post(self, url: str, params: dict, headers: dict, stream: bool, timeout: Any) -> Any:
        assert url == "/images/create" and stream
        assert timeout[1] == pull.PULL_IDLE  # a read timeout: a stalled pull ends
        self.calls.append(
            ("pull", params["fromImage"], params["tag"], threading.current_thread().name)
        )
        if self.pull_fails:
            raise self.pull_fails
        self.closed = False
        return self

    def close(self) -> None:
        self.closed = True

    def _raise_for_status(self, response: Any) -> None:
        pass

    def _stream_helper(self, response: Any, decode: bool) -> Iterator[Any]:
        assert decode
        return self._stream()

    def _stream(self) -> Iterator[Any]:
        for r in self.records:
            time.sleep(self.delay)
            yield r


class StandInEngines(Engines):
    def __init__(self, client: StandInClient):
        super().__init__(max_workers=2, timeout=2)
        self.stand_in = client

    def client(self, node: Node) -> Any:
        return self.stand_in


NODE = Node(name="node-a", engine="unix:///nowhere.sock", cpu_millicores=1000, memory_mib=1024)


def stream(n_layers: int = 2, steps: int = 10, size: int = 8 * MiB) -> list[dict]:
    out: list[dict] = [{"status": "Pulling from lab", "id": "v1"}]
    out += [layer(f"l{i}", "Pulling fs layer") for i in range(n_layers)]
    for s in range(1, steps + 1):
        out += [layer(f"l{i}", "Downloading", size * s // steps, size) for i in range(n_layers)]
    out += [layer(f"l{i}", "Pull complete") for i in range(n_layers)]
    return [*out, {"status": f"Status: Downloaded newer image for {IMAGE}"}]


async def run(client: StandInClient, policy: str, interval: float = 1.0) -> list[tuple]:
    reports: list[tuple[str, float]] = []
    await ensure_image(
        StandInEngines(client), NODE, IMAGE, policy, lambda m, f: reports.append((m, f)), interval
    )
    return reports


async def test_a_present_image_is_used_without_a_pull() -> None:
    for policy in ("ifnotpresent", "never"):
        client = StandInClient(present=True)
        assert await run(client, policy) == []
        assert client.calls == [("inspect_image", IMAGE)]
    client = StandInClient(present=False)
    assert await run(client, "skip") == []
    assert client.calls == []  # skip does not even look


async def test_a_missing_image_is_pulled_in_the_nodes_pull_pool_with_progress() -> None:
    client = StandInClient(present=False, records=stream(), delay=0.01)
    reports = await run(client, "ifnotpresent", interval=0.05)
    assert client.calls[0] == ("inspect_image", IMAGE)
    _, repo, tag, thread = client.calls[1]
    assert (repo, tag) == ("127.0.0.1:5000/lab", "v1")
    assert thread.startswith("gpupool-docker-node-a/pull")  # not the pool of the node's calls
    messages = [m for m, _ in reports]
    assert messages[0] == f"pulling {IMAGE} on node-a"
    assert messages[-1] == f"pulled {IMAGE} on node-a" and reports[-1][1] == 1.0
    assert any(f"pulling {IMAGE} on node-a: " in m and " MiB, " in m for m in messages[1:-1])
    fractions = [f for _, f in reports]
    assert fractions == sorted(fractions)


async def test_progress_is_throttled_and_sent_only_when_it_changed() -> None:
    # 202 records over about 1 s, reported at most every 0.3 s
    client = StandInClient(records=stream(n_layers=2, steps=100), delay=0.005)
    t0 = time.monotonic()
    reports = await run(client, "always", interval=0.3)
    took = time.monotonic() - t0
    assert 3 <= len(reports) <= 2 + took / 0.3 + 1
    assert client.calls[0][0] == "pull"  # always: no inspect first
    messages = [m for m, _ in reports]
    assert len(set(messages)) == len(messages)


async def test_never_refuses_naming_the_image_the_node_and_the_policy() -> None:
    client = StandInClient(present=False)
    with pytest.raises(ImageUnavailable) as e:
        await run(client, "never")
    assert str(e.value).startswith(
        f"image {IMAGE} is not on node node-a and pull_policy is 'never'"
    )
    assert [c[0] for c in client.calls] == ["inspect_image"]


async def test_a_pull_the_engine_refuses_names_the_image_the_node_and_why() -> None:
    client = StandInClient()
    response = requests.Response()
    response.status_code = 404
    client.pull_fails = APIError(
        "404", response=response, explanation="manifest for x not found: manifest unknown"
    )
    with pytest.raises(ImageUnavailable) as e:
        await run(client, "ifnotpresent")
    assert str(e.value) == (
        f"could not pull {IMAGE} on node node-a: manifest for x not found: manifest unknown"
    )


async def test_a_registry_failing_mid_stream_is_an_error_too() -> None:
    records = [*stream()[:5], {"errorDetail": {"message": "unexpected EOF"}, "error": "EOF"}]
    with pytest.raises(
        ImageUnavailable, match=f"could not pull {IMAGE} on node node-a: unexpected EOF"
    ):
        await run(StandInClient(records=records), "always", interval=0.01)


async def test_an_engine_that_does_not_answer_is_not_an_image_error() -> None:
    client = StandInClient()
    client.pull_fails = requests.exceptions.ConnectionError("refused")
    with pytest.raises(EngineUnreachable, match="engine of node node-a"):
        await run(client, "always")


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (requests.exceptions.ChunkedEncodingError("connection broken"), "broke off"),
        (requests.exceptions.ConnectionError("Read timed out. (read timeout=120)"), "stalled"),
        (ValueError("Expecting value: line 1 column 1"), "broke off"),
    ],
)
async def test_an_answer_that_breaks_off_or_stalls_fails_the_pull_not_the_engine(
    error: Exception, said: str
) -> None:
    """The engine answered: its node is not taken for gone (the hub keeps polling its
    servers); the pull fails naming the image and the node, and its answer is closed."""

    def broken() -> Iterator[Any]:
        yield from stream()[:4]
        raise error

    client = StandInClient()
    client._stream = broken  # type: ignore[method-assign]
    engines = StandInEngines(client)
    with pytest.raises(
        ImageUnavailable, match=f"could not pull {IMAGE} on node node-a: the engine's answer {said}"
    ):
        await ensure_image(engines, NODE, IMAGE, "always", lambda m, f: None, 0.01)
    assert client.closed and engines.answering(NODE, within=60)


@pytest.mark.parametrize("policy", ["ifnotpresent", "always"])
async def test_a_reference_without_a_registry_is_never_pulled(policy: str) -> None:
    """gpupool/singleuser is built and loaded on the node: a pull would fetch whatever
    Docker Hub serves under that name."""
    client = StandInClient(present=False)
    with pytest.raises(ImageUnavailable) as info:
        await ensure_image(
            StandInEngines(client), NODE, "gpupool/singleuser:latest", policy, lambda m, f: None
        )
    assert "names no registry, so it is not pulled" in str(info.value)
    assert [c[0] for c in client.calls] == ["inspect_image"]
    client.present = True  # there: used as it is, even with "always"
    await ensure_image(
        StandInEngines(client), NODE, "gpupool/singleuser:latest", policy, lambda m, f: None
    )
    assert "pull" not in [c[0] for c in client.calls]


@pytest.mark.parametrize(
    ("ref", "named"),
    [
        ("gpupool/singleuser:latest", False),
        ("singleuser", False),
        ("127.0.0.1:5000/lab:v1", True),
        ("registry.example.org/team/lab@sha256:" + "a" * 64, True),
        ("localhost/lab", True),
        ("docker.io/jupyter/base-notebook", True),
    ],
)
def test_which_references_name_a_registry(ref: str, named: bool) -> None:
    assert pull.names_a_registry(ref) is named


async def test_starts_needing_the_same_image_on_the_same_node_share_one_pull() -> None:
    client = StandInClient(records=stream(steps=20), delay=0.01)
    engines = StandInEngines(client)
    seen: list[list[str]] = [[], [], []]

    async def one(i: int) -> None:
        await ensure_image(engines, NODE, IMAGE, "always", lambda m, f: seen[i].append(m), 0.05)

    await asyncio.gather(one(0), one(1), one(2))
    assert [c[0] for c in client.calls] == ["pull"]
    assert all(s[-1] == f"pulled {IMAGE} on node-a" for s in seen)
    assert pull._pulls == {}  # forgotten once done: the next start asks again
    await one(0)
    assert [c[0] for c in client.calls] == ["pull", "pull"]


async def test_a_start_given_up_on_leaves_the_shared_pull_running() -> None:
    client = StandInClient(records=stream(steps=30), delay=0.01)
    engines = StandInEngines(client)
    report = lambda m, f: None  # noqa: E731
    first = asyncio.ensure_future(ensure_image(engines, NODE, IMAGE, "always", report, 0.05))
    await asyncio.sleep(0.1)
    second = asyncio.ensure_future(ensure_image(engines, NODE, IMAGE, "always", report, 0.05))
    await asyncio.sleep(0.05)
    first.cancel()
    await second  # the pull it shares finished
    assert [c[0] for c in client.calls] == ["pull"]
    with pytest.raises(asyncio.CancelledError):
        await first
