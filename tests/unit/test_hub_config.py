"""gpupool.hub.configure adds to what the admin set before it, the way JupyterHub
software is combined in one jupyterhub_config.py: services, roles, groups, template
paths and admin users are added to; an authenticator class is kept; a service or role of
a name gpupool defines is refused with that name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from traitlets.config import Config

from gpupool.hub import configure
from gpupool.templating import BUILTIN

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "catalog"


@pytest.fixture
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(FIXTURE, tmp_path / "catalog")
    monkeypatch.setenv("GPUPOOL_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "catalog"


def test_what_the_admin_set_before_stays(catalog: Path) -> None:
    c = Config()
    c.JupyterHub.services = [{"name": "grafana", "url": "http://127.0.0.1:3000"}]
    c.JupyterHub.load_roles = [{"name": "lab-managers", "scopes": ["admin:users"]}]
    c.JupyterHub.load_groups = {"gpupool-admins": {"users": ["ada"]}, "teachers": {"users": []}}
    c.JupyterHub.template_paths = ["/srv/site-templates"]
    c.JupyterHub.authenticator_class = "dummy"
    c.Authenticator.admin_users = {"root-admin"}
    (catalog / "templates").mkdir()
    configure(c, catalog)

    names = [s["name"] for s in c.JupyterHub.services]
    assert names[0] == "grafana" and "gpupool" in names
    roles = [r["name"] for r in c.JupyterHub.load_roles]
    assert roles[0] == "lab-managers" and "gpupool-service" in roles
    assert c.JupyterHub.load_groups["gpupool-admins"] == {"users": ["ada"]}  # the admin's
    assert "teachers" in c.JupyterHub.load_groups
    assert "gpupool-observers" in c.JupyterHub.load_groups  # pool.yaml's, added
    assert c.JupyterHub.template_paths == [
        "/srv/site-templates",
        str((catalog / "templates").resolve()),
        str(BUILTIN),
    ]
    assert c.JupyterHub.authenticator_class == "dummy"
    assert "allow_all" not in c.Authenticator  # the admin's authenticator decides
    assert "root-admin" in c.Authenticator.admin_users


def test_a_fresh_config_gets_the_shared_password_hub(catalog: Path) -> None:
    c = Config()
    configure(c, catalog)
    assert c.JupyterHub.authenticator_class == "shared-password"
    assert c.Authenticator.allow_all is True
    assert c.JupyterHub.template_paths == [str(BUILTIN)]  # no templates/ folder there
    assert c.JupyterHub.services[0]["name"] == "gpupool"


@pytest.mark.parametrize(
    "setting, value, name",
    [
        ("services", [{"name": "gpupool", "url": "http://127.0.0.1:9"}], "gpupool"),
        ("load_roles", [{"name": "gpupool-service", "scopes": []}], "gpupool-service"),
    ],
)
def test_a_name_gpupool_defines_is_refused_with_the_name(
    catalog: Path, setting: str, value: list[dict[str, object]], name: str
) -> None:
    c = Config()
    setattr(c.JupyterHub, setting, value)
    with pytest.raises(SystemExit) as e:
        configure(c, catalog)
    assert f"c.JupyterHub.{setting} already names {name}" in str(e.value)


def test_the_spawner_is_found_by_its_short_name() -> None:
    """``c.JupyterHub.spawner_class = "gpupool"`` (the jupyterhub.spawners entry point),
    as ``"docker"`` names DockerSpawner."""
    from jupyterhub.app import JupyterHub

    from gpupool.gpuspawner import GpuPoolSpawner

    app = JupyterHub()
    app.spawner_class = "gpupool"
    assert app.spawner_class is GpuPoolSpawner


@pytest.mark.parametrize(
    ("chosen", "kept"),
    [
        (None, "gpupool.gpuspawner.GpuPoolSpawner"),
        ("gpupool", "gpupool"),  # the entry point name, as DockerSpawner's "docker"
        ("gpupool.gpuspawner.GpuPoolSpawner", "gpupool.gpuspawner.GpuPoolSpawner"),
    ],
)
def test_the_admins_gpupool_spawner_class_is_kept(
    catalog: Path, chosen: str | None, kept: str
) -> None:
    c = Config()
    if chosen is not None:
        c.JupyterHub.spawner_class = chosen
    configure(c, catalog)
    assert c.JupyterHub.spawner_class == kept


def test_a_subclass_of_the_spawner_is_kept(catalog: Path) -> None:
    from gpupool.gpuspawner import GpuPoolSpawner

    class SiteSpawner(GpuPoolSpawner):
        pass

    c = Config()
    c.JupyterHub.spawner_class = SiteSpawner
    configure(c, catalog)
    assert c.JupyterHub.spawner_class is SiteSpawner


@pytest.mark.parametrize("other", ["docker", "dockerspawner.DockerSpawner", "no.such.Spawner"])
def test_another_spawner_class_is_refused_by_name(catalog: Path, other: str) -> None:
    c = Config()
    c.JupyterHub.spawner_class = other
    with pytest.raises(SystemExit) as info:
        configure(c, catalog)
    message = str(info.value)
    assert f"JupyterHub.spawner_class = {other!r}" in message
    assert "allowed: 'gpupool' (GpuPoolSpawner) or a subclass" in message
