"""A DockerSpawner setting carried over from an earlier hub that gpupool does not apply
fails the spawn at once with a message naming it and what to set instead (it is not
silently dropped), before anything is reserved. Real hub and proxy; no engine needed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.conftest import CATALOG
from tests.support.hub import Hub

pytestmark = pytest.mark.hub


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    h = Hub(CATALOG, watch_nodes=False)
    h.extra_config = (
        'c.DockerSpawner.volumes = {"/srv/shared": "/shared"}\n'
        'c.DockerSpawner.extra_host_config = {"privileged": True}\n'
    )
    h.start()
    try:
        yield h
    finally:
        h.cleanup()


def test_a_setting_gpupool_does_not_apply_is_named_at_start(hub: Hub) -> None:
    token = hub.user_token("sam")
    r = requests.post(
        f"{hub.api}/users/sam/server",
        headers={"Authorization": f"token {token}"},
        json={"user_options": {"spec": "cpu-1"}},
        timeout=60,
    )
    assert r.status_code == 500, r.text
    message = r.json()["message"]
    assert "c.DockerSpawner.volumes is not applied by gpupool; set datasets.yaml" in message
    assert "c.DockerSpawner.extra_host_config is not applied by gpupool" in message
    # nothing was reserved for it
    held = requests.get(
        f"{hub.pool}/reservations?owner=sam",
        headers={"Authorization": f"token {hub.automation_token}"},
        timeout=30,
    ).json()["reservations"]
    assert held == []
