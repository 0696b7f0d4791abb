"""DockerSpawner settings gpupool does not apply are refused, each named with what to
set instead; settings gpupool keeps (JupyterHub's own) pass."""

from __future__ import annotations

import pytest
from traitlets.config import Config

from gpupool.settings_check import APPLIED, INSTEAD, refused_settings


def test_a_config_without_them_passes() -> None:
    c = Config()
    c.Spawner.default_url = "/lab"
    c.Spawner.environment = {"TZ": "UTC"}
    c.Spawner.start_timeout = 120
    c.GpuPoolSpawner.catalog_dir = "/etc/gpupool"
    c.DockerSpawner.pull_policy = "always"  # applied as DockerSpawner applies it (pull.py)
    assert refused_settings(c) == []


@pytest.mark.parametrize("section", ["Spawner", "DockerSpawner", "GpuPoolSpawner"])
@pytest.mark.parametrize("name", ["volumes", "mem_limit", "image", "tls_config"])
def test_each_is_named_with_what_decides_instead(section: str, name: str) -> None:
    c = Config()
    c[section][name] = "x"
    (line,) = refused_settings(c)
    assert line.startswith(f"c.{section}.{name} is not applied by gpupool; set ")
    assert INSTEAD[name] in line


def test_every_dockerspawner_setting_is_either_refused_or_known_to_be_applied() -> None:
    """A DockerSpawner release that adds a setting fails here until it is classified."""
    from dockerspawner import DockerSpawner

    own = set(DockerSpawner.class_own_traits(config=True))
    assert own - set(INSTEAD) - set(APPLIED) == set()
    assert set(INSTEAD) & set(APPLIED) == set()
    assert set(APPLIED) <= own
