"""Hub configuration from the catalog folder: the pool service, scopes, roles, tokens.

``jupyterhub_config.py`` calls :func:`configure` and nothing else. Deployment facts that
are not catalog (ports, the state folder, secrets) come from the environment:

- ``GPUPOOL_CONFIG_DIR``: catalog folder (default: ``hub_config/`` in the working
  directory; ``gpupool init DIR`` writes a starter catalog and a ``jupyterhub_config.py``)
- ``GPUPOOL_STATE_DIR``: hub database, cookie secret, pool ledger (default: ``./.state``)
- ``GPUPOOL_IP`` / ``GPUPOOL_PORT``: public address (default 127.0.0.1:8000); the proxy API
  listens on PORT+1, the pool service on PORT+2, the hub API on PORT+81
- ``GPUPOOL_HUB_IP``: where the hub API listens (default 127.0.0.1); nodes on other hosts
  need an address they reach, and ``GPUPOOL_HUB_CONNECT_URL`` (e.g.
  ``http://10.0.0.5:8081``), the hub API's URL as their containers reach it
- ``GPUPOOL_POOL_IP``: where the pool service listens (default 127.0.0.1). The quickstart
  sets the host's address on gpupool-users, with GPUPOOL_HUB_IP: the proxy reaches the
  service there, and so do servers on that network, which cannot reach the proxy on loopback
- ``GPUPOOL_PUBLIC_URL``: the hub's public URL as users' servers reach it (default
  ``http://GPUPOOL_IP:GPUPOOL_PORT``); servers get ``<it>/services/gpupool/api`` as
  ``GPUPOOL_API_URL`` (without it, and with GPUPOOL_POOL_IP on an address of one host,
  they get the pool service's own URL there)
- ``GPUPOOL_DB_URL``: the pool ledger's SQLAlchemy URL (default SQLite in the state folder)
- ``GPUPOOL_HUB_DB_URL``: JupyterHub's own database (default SQLite in the state folder);
  it may be the pool's PostgreSQL database: their tables and schema versions are apart
- ``GPUPOOL_WATCH_NODES``: ``0`` turns the pool's node probes, reconciler and alerts off
  (for catalogs whose nodes do not exist, as in API tests); default on
- ``GPUPOOL_USER_PASSWORD`` / ``GPUPOOL_ADMIN_PASSWORD``: SharedPasswordAuthenticator's
  passwords, when no other authenticator is configured
- ``GPUPOOL_AUTH_CONFIG``: a config fragment for another login (GitHub, GitLab, OpenID
  Connect: a copy of one of ``deploy/auth/``), loaded by ``jupyterhub_config.py``
- ``GPUPOOL_METRICS_TOKEN``: registers the service ``gpupool-metrics`` with this token and
  the observer role only (read the pool, scrape ``api/metrics``), for Prometheus
- ``GPUPOOL_API_TOKEN``: registers the service ``gpupool-automation`` with this token and
  the pool-admin role, for scripts
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from .catalog import CatalogError, config_dir, load_catalog
from .pool.access import ADMIN, CUSTOM_SCOPES, OBSERVE, USE, pool_roles
from .templating import search_path

PASSED_TO_SERVICE = ("GPUPOOL_DB_URL", "GPUPOOL_WATCH_NODES")

SERVICE = "gpupool"
AUTOMATION = "gpupool-automation"
METRICS = "gpupool-metrics"
SPAWNER = "gpupool-spawner"
IDLE_CULLER = "idle-culler"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a port number") from None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _url_host(ip: str) -> str:
    """``ip`` as the host part of a URL (IPv6 in brackets); ValueError unless an IP."""
    addr = ipaddress.ip_address(ip.strip("[]"))
    return f"[{addr}]" if addr.version == 6 else str(addr)


def _loopback_url(url: str) -> bool:
    return _loopback(urllib.parse.urlsplit(url).hostname or "")


def bridge_reach(catalog: Any, hub_ip: str, connect: str | None) -> list[str]:
    """Why servers on ``network: bridge`` nodes could not reach the hub API: loopback is
    their own, not the hub host's. Empty when they can (or no node uses bridge)."""
    bridged = [n.name for n in catalog.nodes if n.network == "bridge"]
    if not bridged:
        return []
    if not connect and hub_ip.strip("[]") in ("", "0.0.0.0", "::"):
        return [
            f"node(s) {', '.join(bridged)} use network: bridge and the hub API listens on "
            f"every address ({hub_ip or 'unset'}): JupyterHub would give their servers "
            "http://<this host's name>:8081, which containers seldom resolve. Set "
            "GPUPOOL_HUB_CONNECT_URL to the hub API's URL at an address they reach"
        ]
    url = connect or (f"http://[{hub_ip}]" if ":" in hub_ip else f"http://{hub_ip}")
    if not _loopback_url(url):
        return []
    return [
        f"node(s) {', '.join(bridged)} use network: bridge, and their servers would reach "
        f"the hub API at {url}, a loopback address inside their own network namespace. Set "
        "GPUPOOL_HUB_IP to an address of this host they reach (the gateway of the "
        "gpupool-users network on a single host, see docs/security.md, Networking, or 0.0.0.0) "
        "and GPUPOOL_HUB_CONNECT_URL to the hub API's URL at that address"
    ]


def _services_hear_interrupts() -> None:
    """A hub started in the background of a script (the quickstart, ``cmd &``) inherits
    SIGINT ignored, and so would its managed services: JupyterHub stops each one with
    SIGINT first and waits before it sends SIGTERM, so one service ignoring it (the idle
    culler) kept the hub's shutdown at half a minute. Services inherit the default."""
    try:
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread (a test loading the config): nothing to fix
        pass


def _added(c: Any, name: str, ours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``c.JupyterHub.<name>`` (services, load_roles) as the admin set it, with gpupool's
    entries after; one of the same name is an error that names it (not a silent loss)."""
    theirs = list(getattr(c.JupyterHub, name)) if name in c.JupyterHub else []
    clash = sorted({x.get("name") for x in theirs} & {x["name"] for x in ours})
    if clash:
        raise SystemExit(
            f"c.JupyterHub.{name} already names {', '.join(map(str, clash))}, which gpupool "
            f"defines: rename yours (gpupool's are {', '.join(x['name'] for x in ours)})"
        )
    return [*theirs, *ours]


def _spawner_class(c: Any) -> Any:
    """The admin's spawner_class when it is gpupool's ("gpupool", or a subclass of
    GpuPoolSpawner); the hub cannot run gpupool's pool with another spawner."""
    if "spawner_class" not in c.JupyterHub:
        return "gpupool.gpuspawner.GpuPoolSpawner"
    chosen = c.JupyterHub.spawner_class
    if chosen == "gpupool":
        return chosen
    from traitlets.utils.importstring import import_item

    from .gpuspawner import GpuPoolSpawner

    try:
        cls = import_item(chosen) if isinstance(chosen, str) and "." in chosen else chosen
    except ImportError:
        cls = None
    if isinstance(cls, type) and issubclass(cls, GpuPoolSpawner):
        return chosen
    raise SystemExit(
        f"JupyterHub.spawner_class = {chosen!r}: a gpupool hub spawns with gpupool's spawner; "
        "allowed: 'gpupool' (GpuPoolSpawner) or a subclass of gpupool.gpuspawner.GpuPoolSpawner"
    )


def configure(c: Any, catalog_dir: str | os.PathLike[str] | None = None) -> None:
    """Fill a JupyterHub config object ``c`` for a gpupool hub. What the admin set before
    stays: services, roles, groups, template paths and admin users are added to, an
    authenticator class is kept (the shared-password one is only the default)."""
    _services_hear_interrupts()
    directory = Path(catalog_dir) if catalog_dir is not None else config_dir()
    try:
        catalog = load_catalog(directory)
    except CatalogError as e:
        raise SystemExit(str(e)) from None
    state = Path(os.environ.get("GPUPOOL_STATE_DIR") or Path.cwd() / ".state").resolve()
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    ip = os.environ.get("GPUPOOL_IP", "127.0.0.1")
    port = _env_int("GPUPOOL_PORT", 8000)

    pool_ip = os.environ.get("GPUPOOL_POOL_IP", "127.0.0.1")
    try:
        pool_host = _url_host(pool_ip)
    except ValueError:
        raise SystemExit(
            f"GPUPOOL_POOL_IP={pool_ip!r} is not an IP address; it is where the pool service "
            "listens (default 127.0.0.1)"
        ) from None
    pool_url = f"http://{pool_host}:{port + 2}"

    c.JupyterHub.bind_url = f"http://{ip}:{port}"
    c.JupyterHub.hub_bind_url = (
        f"http://{os.environ.get('GPUPOOL_HUB_IP', '127.0.0.1')}:{port + 81}"
    )
    connect = os.environ.get("GPUPOOL_HUB_CONNECT_URL")
    if connect:
        c.JupyterHub.hub_connect_url = connect
    public = os.environ.get("GPUPOOL_PUBLIC_URL") or f"http://{ip}:{port}"
    # servers reach the pool through the proxy at the public URL; where that is loopback
    # and the pool service listens on an address of this host, they reach it there
    server_pool = f"{public.rstrip('/')}/services/{SERVICE}/api"
    if (
        not os.environ.get("GPUPOOL_PUBLIC_URL")
        and _loopback_url(public)
        and not _loopback(pool_ip)
        and pool_ip.strip("[]") not in ("0.0.0.0", "::")
    ):
        server_pool = f"{pool_url}/services/{SERVICE}/api"
    for problem in bridge_reach(catalog, os.environ.get("GPUPOOL_HUB_IP", "127.0.0.1"), connect):
        raise SystemExit(problem)
    if any(n.network == "bridge" for n in catalog.nodes) and _loopback_url(server_pool):
        print(
            f"gpupool: warning: servers on bridge nodes reach the pool API at {server_pool}, a "
            "loopback address outside their network namespace; set GPUPOOL_PUBLIC_URL to an "
            "address they reach, or GPUPOOL_POOL_IP on a single host (the lab's pool panels need "
            "it)",
            file=sys.stderr,
        )
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{port + 1}"
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    c.JupyterHub.db_url = (
        os.environ.get("GPUPOOL_HUB_DB_URL") or f"sqlite:///{state / 'jupyterhub.sqlite'}"
    )
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")

    c.JupyterHub.custom_scopes = CUSTOM_SCOPES
    access = catalog.pool.access
    services: list[dict[str, Any]] = [
        {
            "name": SERVICE,
            "display": True,
            "oauth_no_confirm": True,
            # the pool's pages log users in through the hub; their tokens carry the pool
            # scopes the user has (so pages can tell users, observers and admins apart)
            "oauth_client_allowed_scopes": [USE, OBSERVE, ADMIN],
            "url": pool_url,
            "command": [sys.executable, "-m", "gpupool.pool.service"],
            "environment": {
                "GPUPOOL_CONFIG_DIR": str(directory.resolve()),
                "GPUPOOL_STATE_DIR": str(state),
                # the hub starts its services with a clean environment: pass ours on
                **{k: os.environ[k] for k in PASSED_TO_SERVICE if os.environ.get(k)},
            },
        }
    ]
    # The spawner's own token: made at each start, held only by the hub process.
    spawner_token = secrets.token_hex(32)
    services.append({"name": SPAWNER, "api_token": spawner_token})
    admin_services = []
    token = os.environ.get("GPUPOOL_API_TOKEN")
    if token:
        if len(token) < 32:
            raise SystemExit(
                "GPUPOOL_API_TOKEN must be at least 32 characters (try: openssl rand -hex 32)"
            )
        services.append({"name": AUTOMATION, "api_token": token})
        admin_services.append(AUTOMATION)
    observer_services = []
    metrics_token = os.environ.get("GPUPOOL_METRICS_TOKEN")
    if metrics_token:
        if len(metrics_token) < 32:
            raise SystemExit("GPUPOOL_METRICS_TOKEN must be at least 32 characters")
        services.append({"name": METRICS, "api_token": metrics_token})
        observer_services.append(METRICS)
    culler_services = []
    idle = catalog.pool.culling.server_idle_timeout
    if idle:
        # the cheap kind of idle (no activity in the lab); the pool culls idle GPUs itself
        services.append(
            {
                "name": IDLE_CULLER,
                "command": [
                    sys.executable,
                    "-m",
                    "jupyterhub_idle_culler",
                    f"--timeout={int(idle)}",
                    f"--cull-every={max(10, min(300, int(idle) // 10))}",
                ],
            }
        )
        culler_services.append(IDLE_CULLER)
    c.JupyterHub.services = _added(c, "services", services)
    c.JupyterHub.load_roles = _added(
        c,
        "load_roles",
        pool_roles(
            admin_users=access.admin_users,
            admin_groups=access.admin_groups,
            observer_users=access.observer_users,
            observer_services=observer_services,
            observer_groups=access.observer_groups,
            admin_services=admin_services,
            spawner_services=[SPAWNER],
            culler_services=culler_services,
            service=SERVICE,
        ),
    )
    # Groups named in pool.yaml exist from the start so admins can fill them (a group the
    # admin declared keeps the admin's definition).
    groups = dict(c.JupyterHub.load_groups) if "load_groups" in c.JupyterHub else {}
    for g in (*access.admin_groups, *access.observer_groups):
        groups.setdefault(g, {"users": []})
    c.JupyterHub.load_groups = groups

    if "authenticator_class" not in c.JupyterHub:  # the admin's own authenticator stays
        c.JupyterHub.authenticator_class = "shared-password"
        c.SharedPasswordAuthenticator.user_password = os.environ.get("GPUPOOL_USER_PASSWORD", "")
        c.SharedPasswordAuthenticator.admin_password = os.environ.get("GPUPOOL_ADMIN_PASSWORD", "")
        c.Authenticator.allow_all = True
    admins = set(c.Authenticator.admin_users) if "admin_users" in c.Authenticator else set()
    c.Authenticator.admin_users = admins | set(access.admin_users)

    # the hub's pages with a "Pool" link in the navigation bar for pool admins and
    # observers; the catalog folder's templates/ overrides them, as it overrides gpupool's
    # own (templating.py), after any template_paths the admin set before this call
    admin_set = list(c.JupyterHub.template_paths) if "template_paths" in c.JupyterHub else []
    c.JupyterHub.template_paths = [
        *admin_set,
        *(str(p) for p in search_path(directory.resolve())),
    ]
    c.JupyterHub.spawner_class = _spawner_class(c)
    c.GpuPoolSpawner.catalog_dir = str(directory.resolve())
    c.GpuPoolSpawner.pool_api_url = f"{pool_url}/services/{SERVICE}/api"
    c.GpuPoolSpawner.pool_api_token = spawner_token
    c.GpuPoolSpawner.server_pool_api_url = server_pool
    c.Spawner.default_url = "/lab"
    # Servers outlive a hub restart (they keep their reservations; the hub finds them again).
    c.JupyterHub.cleanup_servers = False
    # Servers get just what JupyterLab needs from the hub, plus reading the pool as their user.
    c.Spawner.server_token_scopes = [
        "users:activity!user",
        "access:servers!server",
        "custom:gpupool:use",
    ]
    # Land on the home page (servers, Services menu) rather than spawning straight away.
    c.JupyterHub.default_url = "/hub/home"
