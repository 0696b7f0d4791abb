"""The deployment files agree with the code: every setting they pass is one the hub reads
(documented in gpupool.hub), every variable the compose file uses is in env.example, the
systemd units start programs that gpupool installs, and images/build.sh refuses what it
cannot build with a message that says what would work. (The compose deployment itself
runs in tests/integration/test_compose.py.)"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import gpupool.hub

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"
SYSTEMD = ROOT / "deploy" / "systemd"


def documented_settings() -> set[str]:
    return set(re.findall(r"``(GPUPOOL_[A-Z_]+)``", gpupool.hub.__doc__ or ""))


def test_the_hub_service_passes_only_settings_the_hub_reads() -> None:
    compose = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    hub_env = set(compose["services"]["hub"]["environment"])
    passed = {k for k in hub_env if k.startswith("GPUPOOL_")}
    assert passed - documented_settings() == set(), "compose passes settings the hub ignores"
    unit = (SYSTEMD / "gpupool-hub.service").read_text()
    in_unit = set(re.findall(r"^#?\s*(GPUPOOL_[A-Z_]+)=", unit, re.M))
    assert in_unit and in_unit - documented_settings() == set()


def test_every_compose_variable_is_in_env_example() -> None:
    used = set(re.findall(r"\$\{([A-Z_]+)", (COMPOSE / "compose.yaml").read_text()))
    example = {
        line.split("=", 1)[0]
        for line in (COMPOSE / "env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    optional = {"GPUPOOL_POSTGRES_IMAGE", "GPUPOOL_HUB_IMAGE", "GPUPOOL_AGENT_IMAGE"}
    assert used - example - optional == set()
    assert example - used - {"COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES"} == set()


@pytest.mark.parametrize("unit", ["gpupool-hub.service", "gpupool-agent.service"])
def test_systemd_units_start_what_gpupool_installs(unit: str) -> None:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string((SYSTEMD / unit).read_text())
    program = Path(cp["Service"]["ExecStart"].split()[0])
    assert program.parent == Path("/opt/gpupool/bin")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert program.name == "jupyterhub" or re.search(rf"^{program.name} = ", pyproject, re.M)
    assert cp["Service"]["NoNewPrivileges"] == "yes"
    assert cp["Service"]["CapabilityBoundingSet"] == ""


def test_build_sh_refuses_hami_core_without_cuda_and_unknown_images() -> None:
    def build(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(ROOT / "images" / "build.sh"), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    r = build("--image", "hami-core")
    assert r.returncode == 1
    assert "needs a CUDA devel base image, e.g. --base nvidia/cuda:" in r.stderr
    r = build("--image", "hami-core", "--base", "nvidia/cuda:x", "--hami-src", "/nonexistent")
    assert r.returncode == 1 and "no HAMi-core source there" in r.stderr
    r = build("--image", "nope")
    assert r.returncode == 1
    assert "allowed: singleuser, agent, trainer, hub, hami-core, all" in r.stderr
    hashes = {i: build("--image", i, "--print-hash").stdout.strip() for i in ("agent", "hub")}
    assert all(re.fullmatch(r"[0-9a-f]{16}", h) for h in hashes.values()), hashes
    assert hashes["agent"] != hashes["hub"]


def test_build_libvgpu_says_what_is_missing(tmp_path: Path) -> None:
    script = ROOT / "images" / "hami-core" / "build-libvgpu.sh"
    r = subprocess.run(
        ["bash", str(script), str(tmp_path), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "no HAMi-core source in" in r.stderr
    (tmp_path / "CMakeLists.txt").write_text("project(x)\n")
    r = subprocess.run(
        ["bash", str(script), str(tmp_path), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "CUDA_HOME": str(tmp_path / "no-cuda")},
    )
    assert r.returncode == 1 and "HAMi-core needs a CUDA devel base" in r.stderr


def test_image_build_hash_is_the_same_in_any_checkout_and_follows_the_lab_sources(
    tmp_path: Path,
) -> None:
    """The lab extension's webpack output differs between checkouts (a module's number comes
    from its absolute path), so hashing it made every clean clone rebuild every image; the
    hash takes labextension/build.sh's stamp of the sources instead."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")

    def checkout(name: str, remote_entry: str, stamp: str) -> Path:
        root = tmp_path / name
        for f in filter(None, files):
            src, dst = ROOT / f.decode(), root / f.decode()
            if src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        built = root / "labextension" / "gpupool_lab" / "labextension" / "static"
        built.mkdir(parents=True)
        (built / "remoteEntry.js").write_text(remote_entry)
        (root / "labextension" / ".build-stamp").write_text(stamp + "\n")
        return root

    def agent_hash(root: Path) -> str:
        r = subprocess.run(
            ["bash", str(root / "images" / "build.sh"), "--image", "agent", "--print-hash"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "JUPYTERHUB_VERSION": "5.0.0"},
        )
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    a = agent_hash(checkout("a", "var e={217(e", "stamp-1"))
    b = agent_hash(checkout("b", "var e={723(e", "stamp-1"))
    c = agent_hash(checkout("c", "var e={217(e", "stamp-2"))
    assert a == b
    assert c != a


def _copy_node_package():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "copy_node_package", ROOT / "images" / "copy_node_package.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.copy_node_package


def _package(d: Path, name: str, deps: dict[str, str] | None = None, **more: object) -> Path:
    d.mkdir(parents=True)
    (d / "package.json").write_text(json.dumps({"name": name, "dependencies": deps or {}, **more}))
    return d


def test_a_hoisted_node_package_is_copied_with_what_it_needs(tmp_path: Path) -> None:
    """The hub image copies the build machine's configurable-http-proxy. From a local npm
    install (tests/run.sh's .tools) its dependencies sit beside it, hoisted; a copy of the
    package alone failed in the image with "Cannot find package 'commander'". The copy
    brings each package it needs, by Node's lookup, and nothing else."""
    nm = tmp_path / "tools" / "node_modules"
    proxy = _package(nm / "proxy", "proxy", {"a": "1"}, optionalDependencies={"gone": "1"})
    _package(nm / "a", "a", {"@s/b": "1", "d": "2"})
    _package(nm / "a" / "node_modules" / "d", "d")  # a's own version of d: nested
    _package(nm / "d", "d")  # another version, hoisted, that nothing here needs
    _package(nm / "@s" / "b", "@s/b", {"a": "1"})  # a cycle
    _package(nm / "unrelated", "unrelated")
    (proxy / "bin").mkdir()
    (proxy / "bin" / "proxy.js").write_text("import 'a';\n")

    copy = _copy_node_package()
    added = copy(proxy, tmp_path / "out")

    out = tmp_path / "out"
    assert added == ["@s/b", "a"]
    assert (out / "bin" / "proxy.js").is_file()
    assert sorted(p.name for p in (out / "node_modules").iterdir()) == ["@s", "a"]
    assert (out / "node_modules" / "a" / "node_modules" / "d" / "package.json").is_file()

    # a dependency that is nowhere: an error that names it and who needs it
    _package(nm / "needy", "needy", {"missing-dep": "1"})
    with pytest.raises(FileNotFoundError, match="needy needs the package 'missing-dep'"):
        copy(nm / "needy", tmp_path / "out2")


def test_the_copied_configurable_http_proxy_runs_on_its_own(tmp_path: Path) -> None:
    """The real proxy that tests/run.sh installs, copied as images/build.sh copies it into
    the hub image, starts far from its install (``--version``)."""
    found = shutil.which("configurable-http-proxy") or str(
        ROOT / ".tools" / "node_modules" / ".bin" / "configurable-http-proxy"
    )
    node = shutil.which("node")
    if not Path(found).exists() or node is None:
        pytest.skip("no configurable-http-proxy or node here (tests/run.sh installs both)")
    pkg = Path(os.path.realpath(found)).parents[1]
    assert (pkg / "package.json").is_file(), pkg
    _copy_node_package()(pkg, tmp_path / "chp")
    r = subprocess.run(
        [node, str(tmp_path / "chp" / "bin" / "configurable-http-proxy"), "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == json.loads((pkg / "package.json").read_text())["version"]
