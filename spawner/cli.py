"""The ``gpupool`` command.

Hub-side subcommands live here (``init``, ``plan``, ``check-config``, ``local-catalog``,
``user-network``, ``db``, ``kernels``); the
lab-side ones (``status``, ``specs``, ``usage``) in ``gpupool.lab.cli``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .catalog import CatalogError, config_dir, load_catalog, starter_dir
from .pool.scheduler import POLICIES


def _catalog(path: str | None):  # type: ignore[no-untyped-def]
    try:
        return load_catalog(path or config_dir())
    except CatalogError as e:
        print(f"gpupool: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_plan(args: argparse.Namespace) -> int:
    from .plan import TraceError, run

    catalog = _catalog(args.config)
    try:
        with open(args.trace) if args.trace != "-" else sys.stdin as f:
            return run(
                catalog, f, sys.stdout, node_policy=args.node_policy, gpu_policy=args.gpu_policy
            )
    except FileNotFoundError:
        print(f"gpupool plan: trace file {args.trace} not found", file=sys.stderr)
        return 2
    except TraceError as e:
        print(f"gpupool plan: the trace has problems; nothing was run:\n{e}", file=sys.stderr)
        return 2


HUB_CONFIG = """\
# Written by `gpupool init`: a JupyterHub whose servers are gpupool's, with the catalog
# (specs, images, nodes, datasets, pool settings) in the YAML files beside this one.
#
#   jupyterhub -f {config}
#
# Your own settings go before or after configure(): it adds to services, roles, groups,
# template paths and admin users you set, and keeps an authenticator class you chose.
import os
from pathlib import Path

from gpupool.hub import configure

here = Path(__file__).resolve().parent
# the hub's database and the pool's ledger, wherever jupyterhub is started from
os.environ.setdefault("GPUPOOL_STATE_DIR", str(here / "state"))

c = get_config()  # noqa: F821
c.JupyterHub.spawner_class = "gpupool"
configure(c, here)
"""


def cmd_init(args: argparse.Namespace) -> int:
    """Write the starter catalog and a jupyterhub_config.py into a folder; never overwrite
    without --force (nothing is written when one file is in the way)."""
    try:
        starter = starter_dir()
    except CatalogError as e:
        print(f"gpupool init: {e}", file=sys.stderr)
        return 2
    target = Path(args.dir)
    if target.exists() and not target.is_dir():
        print(
            f"gpupool init: {target} exists and is not a folder; nothing written", file=sys.stderr
        )
        return 2
    files = {p.name: p.read_text() for p in sorted(starter.glob("*.yaml"))}
    files["jupyterhub_config.py"] = HUB_CONFIG.format(
        config=target.resolve() / "jupyterhub_config.py"
    )
    taken = sorted(n for n in files if (target / n).exists())
    if taken and not args.force:
        print(
            f"gpupool init: {target} already has {', '.join(taken)}; nothing written "
            "(--force overwrites them)",
            file=sys.stderr,
        )
        return 2
    target.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (target / name).write_text(text)
    print(f"wrote a starter catalog to {target}: {', '.join(sorted(files))}")
    print(
        f"next: edit {target / 'nodes.yaml'} (your GPU servers) and "
        f"{target / 'specs.yaml'}, check with `gpupool check-config --config {target}`, "
        f"then start the hub: jupyterhub -f {target / 'jupyterhub_config.py'}\n"
        "  its state (databases, secrets) goes to "
        f"{target.resolve() / 'state'} unless GPUPOOL_STATE_DIR says otherwise;\n"
        "  the shared-password login needs GPUPOOL_USER_PASSWORD and GPUPOOL_ADMIN_PASSWORD "
        "(or configure an authenticator of your own);\n"
        "  nodes with network: bridge need GPUPOOL_HUB_IP and GPUPOOL_POOL_IP on an address "
        "their servers reach (docs/install.md)"
    )
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    catalog = _catalog(args.config)
    gpus = sum(len(n.gpus) for n in catalog.nodes)
    print(
        f"{catalog.directory}: {len(catalog.specs)} specs, {len(catalog.images)} images, "
        f"{len(catalog.nodes)} nodes with {gpus} GPUs, {len(catalog.datasets)} datasets: OK"
    )
    for w in catalog.warnings:
        print(f"warning: {w}")
    return 0


def cmd_local_catalog(args: argparse.Namespace) -> int:
    from .localnode import write_local_catalog

    try:
        source = Path(args.source) if args.source else starter_dir()
    except CatalogError as e:
        print(f"gpupool local-catalog: {e}; pass --source", file=sys.stderr)
        return 2
    summary = write_local_catalog(
        source,
        Path(args.out),
        engine=args.engine,
        hami_core=args.hami_core,
        real_hami=args.real_hami,
        datasets_dir=Path(args.datasets_dir) if args.datasets_dir else None,
        network=args.network,
        agent_url=args.agent_url,
        agent_token_file=args.agent_token_file,
    )
    _catalog(args.out)  # the result must load
    print(summary)
    return 0


def cmd_user_network(args: argparse.Namespace) -> int:
    """Make and check gpupool-users on bridge nodes; print each one's gateway."""
    import asyncio

    from .engines import Engines
    from .networks import UnsafeNetwork, ensure_user_network, gateway_of, probe_isolation

    catalog = _catalog(args.config)
    nodes = [
        n for n in catalog.nodes if n.network == "bridge" and n.name in (args.node or [n.name])
    ]
    unknown = sorted(set(args.node or ()) - {n.name for n in catalog.nodes})
    if unknown:
        known = ", ".join(n.name for n in catalog.nodes)
        print(
            f"gpupool user-network: no node {', '.join(unknown)} (nodes: {known})", file=sys.stderr
        )
        return 2
    if not nodes:
        print(
            "gpupool user-network: no node of this selection uses network: bridge", file=sys.stderr
        )
        return 2

    async def each() -> int:
        engines = Engines()
        failed = 0
        for node in nodes:
            try:
                if args.probe_image:
                    gateway = await probe_isolation(engines, node, args.probe_image)
                    how = "isolation probed: containers on it do not reach each other"
                else:
                    await ensure_user_network(engines, node)
                    info = await engines.call(node, "inspect_network", "gpupool-users")
                    gateway, how = gateway_of(info), "not probed (--probe-image)"
            except UnsafeNetwork as e:
                print(f"gpupool user-network: {e}", file=sys.stderr)
                failed += 1
                continue
            except Exception as e:  # an engine that does not answer, an image it lacks
                print(f"gpupool user-network: node {node.name}: {e}", file=sys.stderr)
                failed += 1
                continue
            print(f"{node.name}: gpupool-users, gateway {gateway}; {how}", file=sys.stderr)
            print(f"{node.name} {gateway}")
        return 1 if failed else 0

    return asyncio.run(each())


def cmd_db(args: argparse.Namespace) -> int:
    from sqlalchemy import inspect

    from .pool import migrate
    from .pool.backup import BackupError, backup, restore
    from .pool.service import default_database_url
    from .pool.tables import make_engine

    if args.action == "history":
        for rev, doc in migrate.history():
            print(f"{rev}  {doc}")
        return 0
    url = args.db or default_database_url(_catalog(args.config).pool.database_url)
    shown = url.split("@")[-1] if "@" in url else url  # no password on the screen
    engine = make_engine(url)
    try:
        if args.action == "current":
            with engine.connect() as conn:
                rev = migrate.current(conn)
                has_tables = bool(inspect(conn).get_table_names())
            newest = migrate.head()
            if rev is None:
                what = "made before migrations" if has_tables else "empty"
                print(f"{shown}: no revision ({what}); the newest is {newest}")
            else:
                print(
                    f"{shown}: {rev}"
                    + (" (the newest)" if rev == newest else f"; the newest is {newest}")
                )
            return 0
        if args.action == "upgrade":
            known = [rev for rev, _ in migrate.history()]
            if args.target not in [*known, "head"]:
                print(
                    f"gpupool db upgrade: no revision {args.target!r}; known: {', '.join(known)} "
                    "or head",
                    file=sys.stderr,
                )
                return 2
            print(f"{shown}: {migrate.upgrade(engine, args.target).describe()}")
            return 0
        if args.action == "backup":
            header = backup(engine, Path(args.file))
            rows = sum(header["tables"].values())
            print(f"{shown}: {rows} rows at revision {header['revision']} written to {args.file}")
            return 0
        done = restore(engine, Path(args.file))
        print(
            f"{shown}: {sum(done['restored'].values())} rows restored from {args.file} "
            f"(made {done['created_at']} at revision {done['revision']}); {done['schema']}"
        )
        return 0
    except (BackupError, migrate.MigrationError) as e:
        print(f"gpupool db {args.action}: {e}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def cmd_kernels(args: argparse.Namespace) -> int:
    from .kernels import available, install

    if args.action == "list":
        for k in available():
            state = "ready" if not k.missing else f"needs {', '.join(k.missing)}"
            print(f"{k.name:18} {k.display_name:24} {state}")
        return 0
    prefix = Path(sys.prefix) if args.sys_prefix else Path(args.prefix)
    for k, what in install(prefix):
        print(f"{k.name}: {what}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpupool", description="gpupool: a Jupyter-native GPU pool")
    sub = p.add_subparsers(dest="command", required=True)

    init = sub.add_parser(
        "init",
        help="write a starter catalog and a jupyterhub_config.py into a folder",
        description="Write the starter catalog (specs.yaml, images.yaml, nodes.yaml, "
        "datasets.yaml, pool.yaml: one demo node with four declared GPUs) and a "
        "jupyterhub_config.py that runs gpupool's hub on it, into DIR.",
    )
    init.add_argument("dir", help="folder to write (made if missing)")
    init.add_argument("--force", action="store_true", help="overwrite files already there")
    init.set_defaults(func=cmd_init)

    plan = sub.add_parser(
        "plan",
        help="replay a trace of reservation events against the real scheduler and ledger",
        description="Replay JSON lines {op: reserve|release, id, spec, owner} against the scheduler "
        "and ledger (in-memory database, no engines); print one JSON line per event and a summary.",
    )
    plan.add_argument(
        "--config", help="catalog folder (default: $GPUPOOL_CONFIG_DIR, else ./hub_config)"
    )
    plan.add_argument(
        "--trace", required=True, help="JSON-lines trace file, or - for standard input"
    )
    plan.add_argument(
        "--node-policy", choices=POLICIES, help="override pool.yaml's scheduler.node_policy"
    )
    plan.add_argument(
        "--gpu-policy", choices=POLICIES, help="override pool.yaml's scheduler.gpu_policy"
    )
    plan.set_defaults(func=cmd_plan)

    check = sub.add_parser("check-config", help="validate a catalog folder and summarise it")
    check.add_argument(
        "--config", help="catalog folder (default: $GPUPOOL_CONFIG_DIR, else ./hub_config)"
    )
    check.set_defaults(func=cmd_check_config)

    local = sub.add_parser(
        "local-catalog",
        help="(quickstart) write a catalog whose one node is this machine's Docker engine",
    )
    local.add_argument(
        "--source", help="catalog to copy (default: the starter catalog of `gpupool init`)"
    )
    local.add_argument("--out", required=True, help="folder to write")
    local.add_argument("--engine", default="unix:///var/run/docker.sock")
    local.add_argument(
        "--hami-core", required=True, help="host path of libvgpu.so for sliced specs"
    )
    local.add_argument(
        "--real-hami", action="store_true", help="libvgpu.so is HAMi-core, not the stand-in"
    )
    local.add_argument(
        "--datasets-dir",
        help="export scikit-learn's digits here and point the catalog's 'digits' at it",
    )
    local.add_argument(
        "--network",
        choices=("bridge", "host"),
        default="bridge",
        help="the node's network (default bridge: servers isolated from each other and from "
        "this machine's loopback; host: trusted users only)",
    )
    local.add_argument("--agent-url", help="the node's agent (http://127.0.0.1:PORT)")
    local.add_argument("--agent-token-file", help="the file of the token the agent expects")
    local.set_defaults(func=cmd_local_catalog)

    net = sub.add_parser(
        "user-network",
        help="make gpupool-users on bridge nodes, prove it isolates, print each gateway",
        description="For each node with network: bridge (or those named): make the network "
        "servers and trainings join (gpupool-users, inter-container communication off) when "
        "missing, and with --probe-image prove that two containers on it cannot reach each "
        "other. Prints '<node> <gateway>' per node on standard output; exits 1 when a node's "
        "network does not isolate.",
    )
    net.add_argument(
        "--config", help="catalog folder (default: $GPUPOOL_CONFIG_DIR, else ./hub_config)"
    )
    net.add_argument("--node", action="append", help="only this node (repeatable)")
    net.add_argument(
        "--probe-image", help="an image of the node with python3 (e.g. gpupool/singleuser:latest)"
    )
    net.set_defaults(func=cmd_user_network)

    db = sub.add_parser(
        "db",
        help="the pool's database: schema revision, upgrade, backup and restore",
        description="The pool's database (GPUPOOL_DB_URL, else pool.yaml's database_url, else "
        "SQLite in the state folder). The pool service upgrades the schema itself on start.",
    )
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--db", help="database URL (default: as the pool service finds it)")
    where.add_argument(
        "--config", help="catalog folder (default: $GPUPOOL_CONFIG_DIR, else ./hub_config)"
    )
    dbsub = db.add_subparsers(dest="action", required=True)
    dbsub.add_parser("current", parents=[where], help="the schema revision the database is at")
    dbsub.add_parser("history", help="the schema revisions this gpupool knows")
    up = dbsub.add_parser(
        "upgrade", parents=[where], help="bring the schema to a revision (default: the newest)"
    )
    up.add_argument("target", nargs="?", default="head")
    bk = dbsub.add_parser(
        "backup", parents=[where], help="write every pool row to FILE (gzipped JSON lines)"
    )
    bk.add_argument("file")
    rs = dbsub.add_parser("restore", parents=[where], help="write a backup into an empty database")
    rs.add_argument("file")
    db.set_defaults(func=cmd_db)

    kernels = sub.add_parser(
        "kernels", help="gpupool's Jupyter kernels: PyTorch (GPU slice), Python (CPU only)"
    )
    ksub = kernels.add_subparsers(dest="action", required=True)
    ksub.add_parser("list", help="the kernels, and whether this environment can run them")
    kin = ksub.add_parser("install", help="install the kernels this environment can run")
    where_to = kin.add_mutually_exclusive_group(required=True)
    where_to.add_argument(
        "--sys-prefix", action="store_true", help="into this Python's prefix (the venv)"
    )
    where_to.add_argument("--prefix", help="into PREFIX/share/jupyter/kernels")
    kernels.set_defaults(func=cmd_kernels)

    from .lab.cli import add_commands  # status, specs, usage (inside a user's server)

    add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
