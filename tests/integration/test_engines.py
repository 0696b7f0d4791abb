"""Smoke test of the test infrastructure: two real Docker engines (one also over TCP+TLS
on 127.0.0.1), the single-user image built without a registry and present on both, and
containers from it on host networking."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.docker import (
    SINGLEUSER_TAG,
    TLS_SH,
    Engine,
    docker_cli,
    docker_client,
    start_engines,
    stop_engines,
)
from tests.support.images import ensure_image, import_sleep_image, prune_images

pytestmark = pytest.mark.docker

LABEL = "org.gpupool.test"
CHECK = (
    "jupyterhub-singleuser --version"
    " && python -c 'import gpupool, jupyterlab; print(\"imports-ok\", jupyterlab.__version__)'"
    " && echo uid=$(id -u) pid1=$(cat /proc/1/comm)"
    " && test ! -e /tmp/build-ca.crt && echo no-build-ca"
)


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, Engine]]:
    engs = start_engines(["smoke-a", "smoke-b"], tls_for={"smoke-b"})
    try:
        yield engs
    finally:
        for e in engs.values():
            if e.run_dir is not None:
                ids = e.docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout
                if ids.split():
                    e.docker("rm", "-f", *ids.split(), check=False)
        stop_engines(engs)


@pytest.fixture(scope="module")
def image_id(engines: dict[str, Engine]) -> str:
    return ensure_image(engines.values())


def test_engines_are_separate(engines: dict[str, Engine]) -> None:
    a, b = engines["smoke-a"], engines["smoke-b"]
    assert a.unix_url != b.unix_url
    assert a.tcp_url is None and b.tcp_url is not None
    ia, ib = a.client().info(), b.client().info()
    assert ia["DockerRootDir"] == str(a.data_root)
    assert ib["DockerRootDir"] == str(b.data_root)
    assert ia["ID"] != ib["ID"]


@pytest.mark.parametrize("name", ["smoke-a", "smoke-b"])
def test_singleuser_image_runs(engines: dict[str, Engine], image_id: str, name: str) -> None:
    import jupyterhub

    engine = engines[name]
    client = engine.client()  # TCP + client certificate for smoke-b, the unix socket for smoke-a
    image = client.images.get(SINGLEUSER_TAG)
    assert image.id == image_id
    container = client.containers.run(
        SINGLEUSER_TAG,
        ["sh", "-c", CHECK],
        network_mode="host",
        labels={LABEL: "engines"},
        detach=True,
    )
    try:
        result = container.wait(timeout=120)
        out = container.logs().decode()
    finally:
        container.remove(force=True)
    assert result["StatusCode"] == 0, out
    assert jupyterhub.__version__ in out.splitlines()[0], out
    assert "imports-ok 4." in out, out
    assert "uid=1000 pid1=tini" in out, out
    assert "no-build-ca" in out, out


def test_tls_engine_refuses_clients_without_certificate(
    engines: dict[str, Engine], tmp_path: Path
) -> None:
    import docker

    engine = engines["smoke-b"]
    assert engine.tcp_url is not None and engine.tls_dir is not None
    port = engine.tcp_port
    ca = str(engine.tls_dir / "ca.pem")

    # plain HTTP on the TLS port: the engine answers with a TLS error, never the API
    r = requests.get(f"http://127.0.0.1:{port}/version", timeout=10)
    assert r.status_code == 400 and "ApiVersion" not in r.text
    with pytest.raises(docker.errors.DockerException):
        docker_client(engine.tcp_url, timeout=10)
    plain_cli = subprocess.run(
        [docker_cli(), "-H", engine.tcp_url, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        env={**engine.cli_env(), "DOCKER_HOST": engine.tcp_url},
    )
    assert plain_cli.returncode != 0

    # TLS that trusts the engine but presents no client certificate
    with pytest.raises(docker.errors.DockerException):
        docker_client(engine.tcp_url, tls=docker.tls.TLSConfig(ca_cert=ca, verify=True))

    # a client certificate from another CA
    other = tmp_path / "other"
    subprocess.run(["bash", str(TLS_SH), str(other)], check=True, capture_output=True)
    foreign = docker.tls.TLSConfig(
        client_cert=(str(other / "cert.pem"), str(other / "key.pem")), ca_cert=ca, verify=True
    )
    with pytest.raises(docker.errors.DockerException):
        docker_client(engine.tcp_url, tls=foreign)


def test_tls_engine_accepts_client_certificate(engines: dict[str, Engine]) -> None:
    engine = engines["smoke-b"]
    assert engine.client().version()["ApiVersion"]
    cli = engine.docker("version", "--format", "{{.Server.Version}}", over_tcp=True)
    assert cli.stdout.strip()
    assert engine.tls_config() == {
        "ca": str(engine.tls_dir / "ca.pem"),
        "cert": str(engine.tls_dir / "cert.pem"),
        "key": str(engine.tls_dir / "key.pem"),
    }


def test_a_retagged_image_is_pruned_and_the_current_one_kept(engines: dict[str, Engine]) -> None:
    """What keeps the builder's data-root from growing by a build's layers at every change
    (it reached 43 GB and filled the disk): after a tag moves on, prune_images removes the
    image it left behind and keeps the tagged one."""
    engine = engines["smoke-a"]
    tag = "gpupool-test/prune-me:latest"

    def image_id(ref: str) -> str | None:
        r = engine.docker("image", "inspect", "--format", "{{.Id}}", ref, check=False)
        return r.stdout.strip() if r.returncode == 0 else None

    import_sleep_image(engine, tag)
    first = image_id(tag)
    import_sleep_image(engine, tag)  # a new image ID (a new creation time): the first dangles
    second = image_id(tag)
    assert first and second and first != second
    try:
        prune_images(engine)  # (reclaims ~0 bytes here: both images share one layer)
        assert image_id(first) is None
        assert image_id(tag) == second
    finally:
        engine.docker("rmi", "-f", tag, check=False)
