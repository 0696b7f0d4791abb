"""gpupool ssh-config: the ~/.ssh/config block for a server (used for real by
tests/lab/test_ssh.py::test_the_printed_config_block_connects)."""

from __future__ import annotations

import pytest

from gpupool.lab.sshconfig import SshConfigError, alias, block, from_environment, ssh_url


def test_each_server_gets_its_own_alias():
    assert alias("lara") == "gpupool-lara"
    assert alias("lara", "train") == "gpupool-lara-train"
    assert alias("al@x y", "n/1") == "gpupool-al_x_y-n_1"


def test_the_url_follows_the_hub_and_the_servers_prefix():
    assert ssh_url("https://hub.example.org", "/user/lara/") == (
        "wss://hub.example.org/user/lara/gpupool/ssh"
    )
    assert ssh_url("http://127.0.0.1:8000/", "/user/al%40x/train/") == (
        "ws://127.0.0.1:8000/user/al%40x/train/gpupool/ssh"
    )
    assert ssh_url("hub.example.org", "/user/lara/").startswith("wss://hub.example.org/")
    with pytest.raises(SshConfigError, match="hub's address"):
        ssh_url("ftp://hub", "/user/lara/")


def test_the_block_doubles_percent_signs_for_ssh():
    text = block(user="al@x", server="", url="wss://h/user/al%40x/gpupool/ssh", login="jovyan")
    assert "ProxyCommand gpupool-ssh-proxy wss://h/user/al%%40x/gpupool/ssh" in text
    assert "Host gpupool-al_x\n" in text and "User jovyan" in text and "HostName h" in text


def test_outside_a_server_or_without_the_hubs_address_it_says_what_to_do():
    with pytest.raises(SshConfigError, match="server's terminal"):
        from_environment({}, "https://hub", "jovyan")
    env = {"JUPYTERHUB_USER": "lara", "JUPYTERHUB_SERVICE_PREFIX": "/user/lara/"}
    with pytest.raises(SshConfigError, match="--hub https://"):
        from_environment(env, None, "jovyan")
    env["JUPYTERHUB_PUBLIC_URL"] = "https://hub.example.org/"
    assert "wss://hub.example.org/user/lara/gpupool/ssh" in from_environment(env, None, "jovyan")


def test_each_servers_host_key_is_kept_under_its_alias():
    """Two servers behind one hub address have two host keys: known_hosts must not mix them."""
    a = block(user="lara", server="", url="wss://h/user/lara/gpupool/ssh", login="jovyan")
    b = block(user="lara", server="big", url="wss://h/user/lara/big/gpupool/ssh", login="jovyan")
    assert "HostKeyAlias gpupool-lara\n" in a and "HostKeyAlias gpupool-lara-big\n" in b
