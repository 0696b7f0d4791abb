"""Images are pulled per DockerSpawner's pull_policy (issue 20): a real registry on
loopback (Debian's docker-registry), a real engine as the pool's node, the real
single-user image, a real JupyterHub.

The registry serves the single-user image already built for the other tests, pushed
under new names; the node then loses those names (not the layers it shares with
gpupool/singleuser, so a pull fetches manifests and finds its layers there: seconds, not
a 600 MiB transfer), and a spawn of an images.yaml entry naming one must pull it. A tiny
image made from the host's /bin/sleep is pulled in full to see the bytes counted from the
engine's own stream. Users whose name begins with "never-" spawn with pull_policy
"never" (a pre_spawn_hook sets it, as a site could per user).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from gpupool.catalog import load_catalog
from gpupool.engines import Engines
from gpupool.pull import PullProgress, ensure_image
from tests.support.catalogs import IMAGES, write_engine_catalog
from tests.support.docker import (
    SINGLEUSER_TAG,
    Engine,
    ensure_docker_installed,
    start_engines,
    stop_engines,
)
from tests.support.hub import Hub
from tests.support.images import ensure_image as ensure_test_image
from tests.support.images import import_sleep_image
from tests.support.ports import free_base_port
from tests.support.registry import Registry
from tests.support.servers import (
    api,
    pool,
    progress_messages,
    spawn,
    start,
    wait_ready,
    wait_stopped,
)

NODE = "node-a"  # the spawner tests' first node: its data-root has the image loaded already
PULLED = "gpupool/pulled-lab:t1"  # pushed, then dropped from the node: a spawn pulls it
NEVER = "gpupool/pulled-lab:t2"  # pushed, then dropped: with pull_policy never, refused
MISSING_TAG = "gpupool/pulled-lab:no-such-tag"  # never pushed


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    ensure_docker_installed()
    engs = start_engines([NODE])
    try:
        ensure_test_image(engs.values())
        yield engs[NODE]
    finally:
        stop_engines(engs)


@pytest.fixture(scope="module")
def registry(engine: Engine) -> Iterator[Registry]:
    with Registry() as reg:
        for name in (PULLED, NEVER):
            engine.docker("tag", SINGLEUSER_TAG, reg.ref(name))
            engine.docker("push", reg.ref(name), timeout=600)
            engine.docker("rmi", reg.ref(name))  # the name only: singleuser keeps the layers
        yield reg
        for name in (PULLED, NEVER):
            engine.docker("rmi", reg.ref(name), check=False)


@pytest.fixture(scope="module")
def catalog(engine: Engine, registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = write_engine_catalog(tmp_path_factory.mktemp("catalog"), {NODE: engine})
    closed = free_base_port((0,))  # nothing listens there: a registry that does not answer
    images = [
        *IMAGES,
        {"name": "pulled", "reference": registry.ref(PULLED)},
        {"name": "never", "reference": registry.ref(NEVER)},
        {"name": "no-such-tag", "reference": registry.ref(MISSING_TAG)},
        {"name": "no-registry", "reference": f"127.0.0.1:{closed}/gpupool/lab:t1"},
    ]
    (d / "images.yaml").write_text(yaml.safe_dump({"images": images}))
    return d


@pytest.fixture(scope="module")
def hub(catalog: Path) -> Iterator[Hub]:
    h = Hub(catalog)
    h.extra_config = (
        "def _never_for_some(spawner):\n"
        "    if spawner.user.name.startswith('never-'):\n"
        "        spawner.pull_policy = 'never'\n"
        "c.Spawner.pre_spawn_hook = _never_for_some\n"
    )
    h.start()
    try:
        yield h
    finally:
        h.cleanup()


def reference(catalog: Path, name: str) -> str:
    return next(i.reference for i in load_catalog(catalog).images if i.name == name)


def present(engine: Engine, ref: str) -> bool:
    return engine.docker("image", "inspect", ref, check=False).returncode == 0


def held(hub: Hub, user: str) -> list[dict]:
    return pool(hub, "GET", f"/reservations?owner={user}").json()["reservations"]


def test_the_engines_own_stream_reads_as_bytes_and_layers(
    engine: Engine, registry: Registry
) -> None:
    """A small image pulled in full: the line folded from the real stream counts its bytes."""
    ref = registry.ref("gpupool/sleep:t1")
    import_sleep_image(engine, ref)
    engine.docker("push", ref)
    engine.docker("rmi", ref)
    client = engine.client()
    progress = PullProgress(ref, NODE)
    records = list(client.api.pull(registry.ref("gpupool/sleep"), "t1", stream=True, decode=True))
    for record in records:
        progress.update(record)
    try:
        line = progress.message()
        assert line.startswith(f"pulling {ref} on {NODE}: "), records
        assert line.endswith(" MiB, 1 of 1 layers") and progress.fraction() == 1.0, (line, records)
        got, _, size = line.split(": ")[1].split(" MiB")[0].partition(" of ")
        assert float(got) == float(size) > 0, (line, records)
        assert progress.error is None
        assert present(engine, ref)
    finally:
        engine.docker("rmi", ref, check=False)


def test_ensure_image_against_the_real_engine(engine: Engine, registry: Registry) -> None:
    """The policies on a real engine and registry, outside the hub."""
    from gpupool.catalog.models import Node

    node = Node(name=NODE, engine=engine.unix_url, cpu_millicores=1000, memory_mib=1024)
    ref = registry.ref(PULLED)
    engine.docker("rmi", ref, check=False)
    reports: list[str] = []

    async def run(policy: str) -> None:
        await ensure_image(Engines(), node, ref, policy, lambda m, f: reports.append(m), 0.2)

    asyncio.run(run("skip"))
    assert not present(engine, ref) and reports == []
    with pytest.raises(Exception, match=f"image {ref} is not on node {NODE}"):
        asyncio.run(run("never"))
    asyncio.run(run("ifnotpresent"))
    assert present(engine, ref)
    assert reports[0] == f"pulling {ref} on {NODE}" and reports[-1] == f"pulled {ref} on {NODE}"
    reports.clear()
    asyncio.run(run("ifnotpresent"))  # present now: nothing to do
    asyncio.run(run("never"))
    assert reports == []
    asyncio.run(run("always"))  # asks the registry again
    assert reports[-1] == f"pulled {ref} on {NODE}"
    engine.docker("rmi", ref)


def test_a_spawn_pulls_the_image_the_node_lacks_showing_progress(
    hub: Hub, engine: Engine, catalog: Path
) -> None:
    ref = reference(catalog, "pulled")
    assert not present(engine, ref)
    token = hub.user_token("pia")
    pending = ThreadPoolExecutor(1).submit(
        start, hub, "pia", token, {"spec": "a100-40g", "image": "pulled"}
    )
    messages = progress_messages(hub, "pia", token)
    assert pending.result().status_code in (201, 202), pending.result().text
    text = "\n".join(messages)
    assert f"pulling {ref} on {NODE}" in text, text
    assert f"pulled {ref} on {NODE}" in text, text
    assert text.index("pulled ") < text.index(f"creating the container on {NODE}"), text
    wait_ready(hub, "pia", token)
    assert present(engine, ref)
    c = engine.client().containers.get("gpupool-nb-pia")
    assert c.attrs["Config"]["Image"] == ref
    status = requests.get(
        f"{hub.url}/user/pia/api/status", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert status.status_code == 200, status.text
    api(hub, "DELETE", "/users/pia/server", token)
    wait_stopped(hub, "pia")


def test_with_pull_policy_never_a_missing_image_fails_naming_it(
    hub: Hub, engine: Engine, catalog: Path
) -> None:
    ref = reference(catalog, "never")
    assert not present(engine, ref)
    token = hub.user_token("never-nia")
    r = start(hub, "never-nia", token, {"spec": "a100-40g", "image": "never"})
    assert r.status_code == 500, r.text
    message = r.json()["message"]
    assert f"image {ref} is not on node {NODE} and pull_policy is 'never'" in message, message
    assert held(hub, "never-nia") == []
    assert not present(engine, ref)  # never pulled
    # the same user, an image the node has: starts (never does not stop what is there)
    spawn(hub, "never-nia", token, {"spec": "a100-40g", "image": "lab"})
    wait_ready(hub, "never-nia", token)
    api(hub, "DELETE", "/users/never-nia/server", token)
    wait_stopped(hub, "never-nia")


@pytest.mark.parametrize(
    ("image", "why"),
    [("no-such-tag", "not found"), ("no-registry", "connection refused")],
)
def test_a_pull_that_fails_is_named_releases_the_gpus_and_touches_no_one_else(
    hub: Hub, catalog: Path, image: str, why: str
) -> None:
    other = hub.user_token("oli")
    spawn(hub, "oli", other, {"spec": "a100-1x", "image": "lab"})
    wait_ready(hub, "oli", other)
    ref = reference(catalog, image)
    token = hub.user_token("tia")
    r = start(hub, "tia", token, {"spec": "a100-40g", "image": image})
    assert r.status_code == 500, r.text
    message = r.json()["message"]
    assert f"could not pull {ref} on node {NODE}: " in message, message
    assert why in message.lower(), message
    assert held(hub, "tia") == []
    assert not api(hub, "GET", "/users/tia", hub.admin_token).json().get("servers")
    # oli's server runs on, and tia starts from an image the node has
    status = requests.get(
        f"{hub.url}/user/oli/api/status", headers={"Authorization": f"token {other}"}, timeout=30
    )
    assert status.status_code == 200, status.text
    spawn(hub, "tia", token, {"spec": "a100-40g", "image": "lab"})
    wait_ready(hub, "tia", token)
    for user, tok in (("tia", token), ("oli", other)):
        api(hub, "DELETE", f"/users/{user}/server", tok)
        wait_stopped(hub, user)
