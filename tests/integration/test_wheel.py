"""gpupool installed the way JupyterHub software is installed: the wheel is built from a
clean copy of the checkout (the files git tracks, no build output, no node_modules),
installed (not editable) with pip into a fresh virtual environment, and used from there
only. Real pip, real JupyterLab and jupyter-server listing the extensions, real node
importing a widget's module, a real hub whose configuration `gpupool init` wrote spawning
a server on a real Docker engine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.docker import Engine, ensure_docker_installed, start_engines, stop_engines
from tests.support.hub import Hub
from tests.support.images import ensure_image
from tests.support.ports import free_base_port
from tests.support.servers import api, pool, reservation_of, start, wait_ready, wait_stopped

pytestmark = [pytest.mark.docker, pytest.mark.hub]

REPO = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # jupyter colours "enabled" and "OK"
WIDGETS = ("graph_editor", "gpu_monitor", "dataset_picker", "training_launcher")


def run(*cmd: str | Path, timeout: float = 900, **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    assert p.returncode == 0, (
        f"{cmd} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    )
    return p


def clean_copy(dest: Path) -> Path:
    """What a clean clone of this working tree holds: tracked and new files that git does
    not ignore (so no build output, no node_modules, no .venv)."""
    listed = run("git", "ls-files", "-z", "-co", "--exclude-standard", cwd=REPO).stdout
    for name in filter(None, listed.split("\0")):
        src = REPO / name
        if src.is_file():  # a deleted file is still listed until committed
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(src.read_bytes())
            (dest / name).chmod(src.stat().st_mode)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = clean_copy(tmp_path_factory.mktemp("clone"))
    assert not (src / "labextension" / "gpupool_lab" / "labextension").exists()
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, src)
    (whl,) = out.glob("gpupool-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", env)
    run(
        env / "bin" / "pip", "install", "-q", "--disable-pip-version-check",
        f"{wheel}[hub,lab]", "jupyterlab>=4.2,<5",
    )  # fmt: skip
    return env


def test_the_wheel_carries_its_front_end_its_catalog_and_its_entry_points(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    data = "gpupool-0.1.0.data/data/"
    share = f"{data}share/jupyter/labextensions/@gpupool/lab/"
    assert f"{share}package.json" in names and f"{share}install.json" in names
    assert any(n.startswith(f"{share}static/remoteEntry.") for n in names), names
    assert f"{data}etc/jupyter/jupyter_server_config.d/gpupool-lab.json" in names
    for w in WIDGETS:
        assert f"gpupool/lab/widgets/static/{w}.js" in names
    for f in ("specs.yaml", "images.yaml", "nodes.yaml", "datasets.yaml", "pool.yaml"):
        assert f"gpupool/catalog/starter/{f}" in names
    assert not [n for n in names if n.startswith("gpupool/lab/labextension/")]  # once only
    z = zipfile.ZipFile(wheel)
    install = json.loads(z.read(f"{share}install.json"))
    assert install == {
        "packageManager": "python",
        "packageName": "gpupool",
        "uninstallInstructions": "Use your Python package manager (pip, conda, etc.) to "
        "uninstall the package gpupool",
    }
    meta = z.read("gpupool-0.1.0.dist-info/METADATA").decode()
    assert "Framework :: Jupyter :: JupyterLab :: Extensions :: Prebuilt" in meta
    assert 'Requires-Dist: jupyterhub<7,>=5.3; extra == "hub"' in meta
    entry = z.read("gpupool-0.1.0.dist-info/entry_points.txt").decode()
    assert "[jupyterhub.spawners]\ngpupool = gpupool.gpuspawner:GpuPoolSpawner" in entry


def test_jupyter_lists_both_extensions_enabled_and_ok(venv: Path) -> None:
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(venv / "cfg"), "JUPYTER_PLATFORM_DIRS": "1"}
    lab = run(venv / "bin" / "jupyter", "labextension", "list", env=env)
    text = ANSI.sub("", lab.stdout + lab.stderr)
    assert "@gpupool/lab v0.1.0 enabled OK (python, gpupool)" in text, text
    server = run(venv / "bin" / "jupyter", "server", "extension", "list", env=env)
    text = ANSI.sub("", server.stdout + server.stderr)
    assert "gpupool.lab enabled" in text and re.search(r"gpupool\.lab\s+OK", text), text
    assert f"Config dir: {venv}/etc/jupyter" in text  # enabled by the wheel's own file


def test_a_widgets_javascript_loads_from_the_installed_package(venv: Path) -> None:
    code = (
        "import json, pathlib\n"
        "from gpupool.lab import widgets as w\n"
        "from gpupool.graph.templates import mlp\n"
        "t = w.TrainingLauncher(graph=mlp(inputs=4, hidden=4, classes=2))\n"
        "static = pathlib.Path(w.__file__).parent / 'static'\n"
        "print(json.dumps({'esm': t._esm == (static / 'training_launcher.js').read_text(), "
        "'files': [str(p) for p in sorted(static.glob('*.js'))]}))\n"
    )
    out = json.loads(run(venv / "bin" / "python", "-c", code, cwd="/").stdout)
    assert out["esm"] is True  # anywidget read the module's text from the installed file
    files = out["files"]
    assert [Path(f).stem for f in files] == sorted(WIDGETS)
    assert all(str(venv) in f for f in files)  # the installed copy, not the checkout's
    for f in files:  # node imports each as anywidget does in the browser: one ES module
        probe = (
            f"import({json.dumps(Path(f).as_uri())}).then(m => {{"
            "if (typeof m.default.render !== 'function') { console.error('no render'); process.exit(1) }"
            "})"
        )
        run("node", "-e", probe)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    ensure_docker_installed()
    engs = start_engines(["node-a"])
    try:
        ensure_image(engs.values())
        yield engs["node-a"]
    finally:
        stop_engines(engs)


def test_a_hub_from_gpupool_init_starts_and_spawns(
    venv: Path, engine: Engine, tmp_path: Path
) -> None:
    gpupool = venv / "bin" / "gpupool"
    folder = tmp_path / "site"
    out = run(gpupool, "init", folder, cwd=tmp_path).stdout
    assert "wrote a starter catalog" in out and "jupyterhub -f" in out
    written = sorted(p.name for p in folder.iterdir())
    assert written == [
        "datasets.yaml", "images.yaml", "jupyterhub_config.py", "nodes.yaml", "pool.yaml",
        "specs.yaml",
    ]  # fmt: skip
    config = (folder / "jupyterhub_config.py").read_text()
    assert 'c.JupyterHub.spawner_class = "gpupool"' in config
    # a second init would overwrite: refused, naming the files, nothing changed
    (folder / "specs.yaml").write_text((folder / "specs.yaml").read_text() + "# mine\n")
    again = subprocess.run([str(gpupool), "init", str(folder)], capture_output=True, text=True)
    assert again.returncode == 2
    assert "already has" in again.stderr and "specs.yaml" in again.stderr
    assert (folder / "specs.yaml").read_text().endswith("# mine\n")
    run(gpupool, "check-config", "--config", folder)

    # the admin's one edit: the starter's node is this test's engine
    nodes = yaml.safe_load((folder / "nodes.yaml").read_text())
    node = nodes["nodes"][0]
    lo = free_base_port(tuple(range(20)))
    node.update(engine=engine.url, network="host", ports=f"{lo}-{lo + 19}")
    (folder / "nodes.yaml").write_text(yaml.safe_dump(nodes))

    hub = Hub(
        folder,
        python=str(venv / "bin" / "python"),
        main_config=folder / "jupyterhub_config.py",
    )
    hub.start(timeout=120)
    try:
        token = hub.user_token("wendy")
        r = start(hub, "wendy", token, {"spec": "cpu-small"})
        assert r.status_code in (201, 202), r.text
        server = wait_ready(hub, "wendy", token)
        assert server["ready"], server
        held = reservation_of(hub, "wendy")
        assert held["node"] == "node-a" and held["spec"] == "cpu-small"
        ps = engine.docker("ps", "--filter", "label=io.gpupool.owner=wendy", "-q").stdout
        assert ps.strip(), "no container of wendy's on the engine"
        # the spawner came from the installed package, through its entry point
        assert "gpupool.gpuspawner" not in config
        assert pool(hub, "GET", "/specs").status_code == 200
        api(hub, "DELETE", "/users/wendy/server", hub.admin_token)
        wait_stopped(hub, "wendy")
    finally:
        hub.cleanup()
