"""What pyproject.toml cannot say: the wheel's built parts.

Before packaging, ``build_py`` builds the JupyterLab extension and the notebook widgets'
JavaScript (``labextension/build.sh``, with the JupyterLab that ``build-system.requires``
brings) and copies the starter catalog (``hub_config/``) into ``gpupool/catalog/starter``.
Every target is checked afterwards: a wheel without its front-end fails to build, naming
what is missing, instead of installing widgets whose JavaScript is not there. The data
files (the prebuilt extension, its ``install.json``, the server extension's switch) are
listed once the build made them, as JupyterLab's extension template installs them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
LAB = HERE / "labextension"
BUILT = LAB / "gpupool_lab" / "labextension"
WIDGETS = LAB / "gpupool_lab" / "widgets" / "static"
WIDGET_MODULES = ("graph_editor", "gpu_monitor", "dataset_picker", "training_launcher")
SHARE = "share/jupyter/labextensions/@gpupool/lab"


def missing_targets() -> list[str]:
    """The built files a complete wheel must carry, relative to the checkout."""
    want = [BUILT / "package.json", LAB / "install.json"]
    want += [WIDGETS / f"{m}.js" for m in WIDGET_MODULES]
    gone = [str(p.relative_to(HERE)) for p in want if not p.is_file()]
    if not list((BUILT / "static").glob("remoteEntry.*.js")):
        gone.append(str((BUILT / "static" / "remoteEntry.*.js").relative_to(HERE)))
    return gone


def build_front_end() -> None:
    script = LAB / "build.sh"
    if script.is_file():  # a checkout (an sdist carries the built files instead)
        subprocess.run(["bash", str(script), sys.executable], check=True)
    gone = missing_targets()
    if gone:
        raise SystemExit(
            "gpupool's wheel needs its built front-end; missing: "
            + ", ".join(gone)
            + " (labextension/build.sh builds them; it needs node and npm)"
        )


def data_files() -> list[tuple[str, list[str]]]:
    """What exists of them (a wheel's build checked first that all do)."""
    static = sorted((BUILT / "static").glob("*")) if (BUILT / "static").is_dir() else []
    listed = [
        (SHARE, [BUILT / "package.json", LAB / "install.json"]),
        (f"{SHARE}/static", static),
        ("etc/jupyter/jupyter_server_config.d", [LAB / "jupyter-config" / "gpupool-lab.json"]),
    ]
    return [(d, [str(p.relative_to(HERE)) for p in ps if p.is_file()]) for d, ps in listed]


class BuildPy(build_py):
    def run(self) -> None:
        # An editable install is a checkout, where labextension/build.sh builds the
        # front-end in place (tests/run.sh, images/build.sh) and needs no node to install.
        if not self.editable_mode:
            build_front_end()
        self.distribution.data_files = data_files()
        super().run()
        if not self.editable_mode:  # an editable install reads hub_config/ where it is
            starter = Path(self.build_lib) / "gpupool" / "catalog" / "starter"
            shutil.rmtree(starter, ignore_errors=True)  # a file gone from hub_config/ too
            starter.mkdir(parents=True)
            for f in sorted((HERE / "hub_config").glob("*.yaml")):
                shutil.copy2(f, starter / f.name)


class Sdist(sdist):
    """An sdist carries the built front-end (MANIFEST.in), so it is built first."""

    def run(self) -> None:
        build_front_end()
        super().run()


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
