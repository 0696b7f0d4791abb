"""`gpupool init DIR`: the starter catalog and a jupyterhub_config.py, written into a
folder; what is there already is never overwritten without --force, and a refusal writes
nothing at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpupool.catalog import load_catalog
from gpupool.cli import main

FILES = [
    "datasets.yaml",
    "images.yaml",
    "jupyterhub_config.py",
    "nodes.yaml",
    "pool.yaml",
    "specs.yaml",
]


def test_init_writes_a_catalog_that_loads_and_a_hub_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "a" / "site"
    assert main(["init", str(site)]) == 0
    assert sorted(p.name for p in site.iterdir()) == FILES
    assert [s.slug for s in load_catalog(site).specs][:2] == ["cpu-small", "a100-10g"]
    config = (site / "jupyterhub_config.py").read_text()
    assert 'c.JupyterHub.spawner_class = "gpupool"' in config
    assert "configure(c, here)" in config
    out = capsys.readouterr().out
    assert f"jupyterhub -f {site / 'jupyterhub_config.py'}" in out
    assert "GPUPOOL_USER_PASSWORD" in out and "GPUPOOL_HUB_IP" in out


def test_the_written_config_loads_as_jupyterhub_loads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """traitlets' loader, as `jupyterhub -f` runs it, from another working directory."""
    import os

    import yaml
    from traitlets.config.loader import PyFileConfigLoader

    site = tmp_path / "site"
    assert main(["init", str(site)]) == 0
    monkeypatch.setenv("GPUPOOL_STATE_DIR", "unset")  # so that the config's value is undone
    monkeypatch.delenv("GPUPOOL_STATE_DIR")
    monkeypatch.delenv("GPUPOOL_HUB_IP", raising=False)
    monkeypatch.chdir(tmp_path)
    # the starter's node is on a bridge network: the hub must listen where it reaches
    with pytest.raises(SystemExit, match="GPUPOOL_HUB_IP"):
        PyFileConfigLoader("jupyterhub_config.py", path=str(site)).load_config()
    nodes = yaml.safe_load((site / "nodes.yaml").read_text())
    nodes["nodes"][0]["network"] = "host"
    (site / "nodes.yaml").write_text(yaml.safe_dump(nodes))
    c = PyFileConfigLoader("jupyterhub_config.py", path=str(site)).load_config()
    assert c.JupyterHub.spawner_class == "gpupool"
    assert c.GpuPoolSpawner.catalog_dir == str(site.resolve())
    assert os.environ["GPUPOOL_STATE_DIR"] == str(site.resolve() / "state")  # not ./.state
    assert (site / "state").is_dir() and not (tmp_path / ".state").exists()


def test_init_refuses_to_overwrite_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "specs.yaml").write_text("specs: []  # mine\n")
    assert main(["init", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} already has specs.yaml; nothing written (--force overwrites them)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["specs.yaml"]
    assert (tmp_path / "specs.yaml").read_text() == "specs: []  # mine\n"
    assert main(["init", "--force", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == FILES
    assert "mine" not in (tmp_path / "specs.yaml").read_text()


def test_init_into_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "site"
    f.write_text("")
    assert main(["init", str(f)]) == 2
    assert f"{f} exists and is not a folder; nothing written" in capsys.readouterr().err
