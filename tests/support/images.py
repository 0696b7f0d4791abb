"""Images on the test engines, with no image registry: gpupool's images built once per
change of their inputs (``images/build.sh``) on a builder engine, kept as ``docker save``
tarballs in GPUPOOL_CACHE_DIR and loaded where a test needs them; and a tiny image made
from the host's ``/bin/sleep`` for tests that need a container and no image build.

    ensure_image(engines.values())                       # gpupool/singleuser:latest
    ensure_image(engine, "gpupool/hub:latest", image="hub")
"""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterable
from pathlib import Path

from .docker import BUILD_SH, HASH_LABEL, SINGLEUSER_TAG, Engine, docker_cli


def sleep_rootfs() -> bytes:
    """A tar of a root file system holding only /bin/sleep and the libraries it links."""
    sleep = shutil.which("sleep")
    assert sleep
    sleep = os.path.realpath(sleep)
    ldd = subprocess.run(["ldd", sleep], capture_output=True, text=True, check=False).stdout
    files = {sleep}
    for line in ldd.splitlines():
        for part in line.split():
            if part.startswith("/"):
                files.add(part)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in sorted(files):
            real = os.path.realpath(f)
            tar.add(real, arcname=f.lstrip("/"))
            if f == sleep:
                tar.add(real, arcname="bin/sleep")
    return buf.getvalue()


def import_sleep_image(engine: Engine, tag: str) -> None:
    """A tiny image holding only /bin/sleep, made from the host's (no registry, no build)."""
    r = subprocess.run(
        [docker_cli(), "-H", engine.unix_url, "import", "-", tag],
        input=sleep_rootfs(),
        capture_output=True,
        check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(f"docker import failed: {r.stderr.decode(errors='replace')}")


#: GPUPOOL_CACHE_DIR as images/base.sh and images/build.sh use it.
CACHE_DIR = Path(os.environ.get("GPUPOOL_CACHE_DIR", "/var/cache/gpupool"))
#: The engine that builds images (its data-root keeps the build cache between runs).
BUILDER_NAME = "gpupool-builder"


def image_info(engine: Engine, tag: str) -> tuple[str, str] | None:
    """(image ID, build-hash label) of ``tag`` on ``engine``, or None if it lacks it."""
    r = engine.docker(
        "image",
        "inspect",
        "--format",
        f'{{{{.Id}}}} {{{{index .Config.Labels "{HASH_LABEL}"}}}}',
        tag,
        check=False,
    )
    if r.returncode != 0:
        return None
    image_id, _, label = r.stdout.strip().partition(" ")
    return image_id, label.strip()


def build_hash(image: str = "singleuser", **build_env: str) -> str:
    """The hash of an image's build inputs (``images/build.sh --image IMAGE --print-hash``,
    the value of its ``org.gpupool.build-hash`` label)."""
    r = subprocess.run(
        ["bash", str(BUILD_SH), "--image", image, "--print-hash"],
        capture_output=True,
        text=True,
        env={**os.environ, **build_env},
    )
    if r.returncode != 0:
        raise RuntimeError(f"images/build.sh --print-hash failed:\n{r.stderr}")
    return r.stdout.strip()


def build_image(
    engine: Engine,
    tag: str = SINGLEUSER_TAG,
    *,
    image: str = "singleuser",
    timeout: float = 1800,
    **build_env: str,
) -> None:
    """Run ``images/build.sh --image IMAGE`` against ``engine`` (a no-op when ``tag`` is
    current there; makes the base image with images/base.sh first if the engine lacks it)."""
    r = subprocess.run(
        ["bash", str(BUILD_SH), "--image", image, "--host", engine.unix_url, "--tag", tag],
        env={**engine.cli_env(), **build_env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if r.returncode != 0:
        raise RuntimeError(
            f"images/build.sh on {engine.name} failed (rc {r.returncode}):\n"
            f"{r.stdout[-4000:]}\n{r.stderr[-6000:]}"
        )


def copy_image(src: Engine, dst: Engine, tag: str) -> None:
    """``docker save | docker load`` from one engine to another."""
    cli = docker_cli()
    save = subprocess.Popen(
        [cli, "-H", src.unix_url, "save", tag], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert save.stdout is not None and save.stderr is not None
    load = subprocess.run(
        [cli, "-H", dst.unix_url, "load", "-q"], stdin=save.stdout, capture_output=True, text=True
    )
    save.stdout.close()
    save_err = save.stderr.read().decode(errors="replace")
    save.stderr.close()
    if save.wait() != 0 or load.returncode != 0:
        raise RuntimeError(
            f"docker save {tag} ({src.name}) | docker load ({dst.name}) failed: "
            f"{save_err}{load.stderr}"
        )


def prune_images(engine: Engine) -> int:
    """Remove ``engine``'s dangling images (earlier builds or loads of a tag that has moved
    on, and the intermediate layers only they used); tagged images and the classic builder's
    cache for them stay. Returns the bytes reclaimed, as the engine reports them."""
    client = engine.client(over_tcp=False, timeout=600)
    try:
        r = client.api.prune_images(filters={"dangling": True})
    finally:
        client.close()
    return int(r.get("SpaceReclaimed") or 0)


def _slug(tag: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in tag)


def image_tarball(
    tag: str = SINGLEUSER_TAG,
    *,
    builder: Engine | None = None,
    image: str = "singleuser",
    **build_env: str,
) -> Path:
    """``docker save`` of the current ``tag`` in GPUPOOL_CACHE_DIR/images (built if missing).

    The build runs on ``builder`` or, by default, on a dedicated engine named
    ``gpupool-builder`` (started for the build, stopped after) whose persistent data-root
    keeps the build cache, so a change to gpupool's code rebuilds in seconds and the test
    engines' names do not matter. Older tarballs of the same tag are removed."""
    want = build_hash(image, **build_env)
    folder = CACHE_DIR / "images"
    folder.mkdir(parents=True, exist_ok=True)
    tarball = folder / f"{_slug(tag)}-{want}.tar"
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one build at a time, across sessions too
        if tarball.exists():
            return tarball
        own = builder is None
        eng = builder if builder is not None else Engine(BUILDER_NAME, clean=False)
        try:
            eng.start()
            build_image(eng, tag, image=image, **build_env)
            info = image_info(eng, tag)
            if info is None or info[1] != want:
                raise RuntimeError(f"{tag} on {eng.name} after the build: {info}, want {want}")
            # the previous build of this tag is dangling now: without this its layers
            # (and every earlier one's) stay in the builder's data-root, tens of GB a week
            prune_images(eng)
            for old in folder.glob(f"{_slug(tag)}-*"):
                if old != tarball:  # older tarballs of this tag, and a save cut short
                    old.unlink(missing_ok=True)
            tmp = tarball.with_suffix(".tmp")
            try:
                eng.docker("save", "-o", str(tmp), tag)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            tmp.chmod(0o644)
            tmp.rename(tarball)
        finally:
            if own:
                eng.stop()
        return tarball
    finally:
        os.close(fd)


def ensure_image(
    engines: Engine | Iterable[Engine],
    tag: str = SINGLEUSER_TAG,
    *,
    builder: Engine | None = None,
    image: str = "singleuser",
    **build_env: str,
) -> str:
    """Make the current ``tag`` (the single-user image, by default) present on every
    engine; returns its image ID (the same on all of them).

    Engines whose ``tag`` already carries the current build hash are left alone. The others
    ``docker load`` the tarball that :func:`image_tarball` keeps in GPUPOOL_CACHE_DIR/images
    (built once on the builder engine when the inputs change); their previous image of that
    tag is removed if nothing uses it. ``build_env`` goes to build.sh's environment (e.g.
    ``GPUPOOL_BASE_IMAGE``, ``JUPYTERLAB_SPEC``)."""
    engs = [engines] if isinstance(engines, Engine) else list(engines)
    if not engs:
        raise ValueError("no engines")
    want = build_hash(image, **build_env)
    infos = {e.name: image_info(e, tag) for e in engs}
    stale = [e for e in engs if not (i := infos[e.name]) or i[1] != want]
    if stale:
        tarball = image_tarball(tag, builder=builder, image=image, **build_env)
        for e in stale:
            old = infos[e.name]
            e.docker("load", "-q", "-i", str(tarball), timeout=600)
            infos[e.name] = image_info(e, tag)
            if old is not None and old[0] != (infos[e.name] or ("",))[0]:
                e.docker("rmi", old[0], check=False)  # fails (fine) if a container uses it
            prune_images(e)  # and the ones earlier runs could not remove
    ids = {i[0] for i in infos.values() if i}
    labels = {i[1] for i in infos.values() if i}
    if len(ids) != 1 or labels != {want} or any(i is None for i in infos.values()):
        raise RuntimeError(f"{tag} is not the same current image everywhere: {infos}, want {want}")
    return ids.pop()
