"""The OAuthenticator set-ups in deploy/auth/ loaded the way the hub loads them
(jupyterhub_config.py with GPUPOOL_AUTH_CONFIG), against OAuthenticator itself (no
network): the groups a login brings, who may log in, who becomes admin, and that
pool.yaml maps those groups to the pool's roles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from traitlets.config import Config, PyFileConfigLoader

REPO = Path(__file__).resolve().parents[2]
ENV = {
    "GPUPOOL_OAUTH_CALLBACK_URL": "https://hub.example.org/hub/oauth_callback",
    "GPUPOOL_OAUTH_CLIENT_ID": "client-id",
    "GPUPOOL_OAUTH_CLIENT_SECRET": "client-secret",
    "GPUPOOL_GITHUB_ORG": "example-lab",
    "GPUPOOL_GITLAB_URL": "https://gitlab.example.org/",
    "GPUPOOL_GITLAB_GROUPS": "ml-lab ml-lab/students",
    "GPUPOOL_OIDC_ISSUER": "https://sso.example.org/realms/lab",
    "GPUPOOL_OIDC_ALLOWED_GROUPS": "gpu-users gpu-admins",
    "GPUPOOL_OIDC_ADMIN_GROUPS": "gpu-admins",
    # hub_config's node is on network: bridge: its servers reach the hub API here
    "GPUPOOL_HUB_IP": "10.0.0.5",
    "GPUPOOL_HUB_CONNECT_URL": "http://10.0.0.5:8081",
}


def load(monkeypatch: pytest.MonkeyPatch, catalog_dir: Path, fragment: str, pool: dict) -> Config:
    cat, tmp_path = catalog_dir, catalog_dir.parent
    (cat / "pool.yaml").write_text(yaml.safe_dump(pool))
    monkeypatch.setenv("GPUPOOL_CONFIG_DIR", str(cat))
    monkeypatch.setenv("GPUPOOL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("GPUPOOL_AUTH_CONFIG", str(REPO / "deploy" / "auth" / fragment))
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    return PyFileConfigLoader("jupyterhub_config.py", path=str(REPO)).load_config()


def authenticator(config: Config) -> Any:
    from oauthenticator.generic import GenericOAuthenticator
    from oauthenticator.github import GitHubOAuthenticator

    cls = {"github": GitHubOAuthenticator, "generic-oauth": GenericOAuthenticator}[
        config.JupyterHub.authenticator_class
    ]
    return cls(config=config)


def role(config: Config, name: str) -> dict:
    return next(r for r in config.JupyterHub.load_roles if r["name"] == name)


async def login(auth: Any, name: str, auth_state: dict) -> tuple[bool, dict]:
    model = {"name": name, "admin": None, "auth_state": auth_state}
    model = await auth._apply_managed_groups(model)  # what authenticate() does after the IdP
    return await auth.check_allowed(name, model), model


async def test_generic_oidc_groups_login_admins_and_pool_roles(
    monkeypatch: pytest.MonkeyPatch, catalog_dir: Path
) -> None:
    pool = {"admins": {"groups": ["gpu-admins"]}, "observers": {"groups": ["finance"]}}
    config = load(monkeypatch, catalog_dir, "oidc.py", pool)
    auth = authenticator(config)
    assert auth.manage_groups and not auth.allow_all and config.JupyterHub.load_groups == {}
    assert auth.token_url == "https://sso.example.org/realms/lab/protocol/openid-connect/token"
    ok, m = await login(auth, "ada", {"oauth_user": {"groups": ["gpu-admins", "staff"]}})
    assert ok and m["groups"] == ["gpu-admins", "staff"] and m["admin"] is True
    ok, m = await login(auth, "uma", {"oauth_user": {"groups": ["gpu-users"]}})
    assert ok and m["admin"] is False
    ok, _ = await login(auth, "eve", {"oauth_user": {"groups": ["visitors"]}})
    assert not ok
    ok, _ = await login(auth, "nog", {"oauth_user": {}})
    assert not ok
    # the groups from the IdP carry the pool's roles, as pool.yaml says
    assert role(config, "gpupool-admin")["groups"] == ["gpu-admins"]
    assert role(config, "gpupool-observer")["groups"] == ["finance"]


async def test_gitlab_groups_by_full_path(
    monkeypatch: pytest.MonkeyPatch, catalog_dir: Path
) -> None:
    pool = {"quotas": {"groups": {"ml-lab/students": {"gpus": 1}}}}
    config = load(monkeypatch, catalog_dir, "gitlab.py", pool)
    auth = authenticator(config)
    assert auth.authorize_url == "https://gitlab.example.org/oauth/authorize"
    ok, m = await login(auth, "stu", {"oauth_user": {"groups": ["ml-lab/students"]}})
    assert ok and m["groups"] == ["ml-lab/students"]
    ok, _ = await login(auth, "out", {"oauth_user": {"groups": ["other"]}})
    assert not ok


async def test_github_teams_become_groups(
    monkeypatch: pytest.MonkeyPatch, catalog_dir: Path
) -> None:
    pool = {"admins": {"groups": ["example-lab:ml-platform"]}}
    config = load(monkeypatch, catalog_dir, "github.py", pool)
    auth = authenticator(config)
    assert auth.allowed_organizations == {"example-lab"} and auth.populate_teams_in_auth_state
    teams = [
        {"slug": "ml-platform", "organization": {"login": "example-lab"}},
        {"slug": "students", "organization": {"login": "example-lab"}},
    ]
    groups = await auth.get_user_groups({"teams": teams})
    assert groups == {"example-lab:ml-platform", "example-lab:students"}
    assert await auth.get_user_groups({"teams": None}) == set()
    assert role(config, "gpupool-admin")["groups"] == ["example-lab:ml-platform"]


def test_missing_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, catalog_dir: Path
) -> None:
    monkeypatch.delenv("GPUPOOL_OIDC_ISSUER", raising=False)
    monkeypatch.setenv("GPUPOOL_CONFIG_DIR", str(catalog_dir))
    monkeypatch.setenv("GPUPOOL_STATE_DIR", str(catalog_dir.parent / "state"))
    monkeypatch.setenv("GPUPOOL_AUTH_CONFIG", str(REPO / "deploy" / "auth" / "oidc.py"))
    monkeypatch.setenv("GPUPOOL_HUB_IP", ENV["GPUPOOL_HUB_IP"])
    monkeypatch.setenv("GPUPOOL_HUB_CONNECT_URL", ENV["GPUPOOL_HUB_CONNECT_URL"])
    with pytest.raises(KeyError, match="GPUPOOL_OIDC_ISSUER"):
        PyFileConfigLoader("jupyterhub_config.py", path=str(REPO)).load_config()
