"""Puts a ContainerPlan onto its node: the one executor of container.py's plans, for
notebook servers (gpuspawner.py) and trainings (pool/trainings/starting.py).

Before a plan is built, :func:`prepare_node` makes what it names: the owner's home volume
(owners.home_for: made, or adopted from the old naming rule, never another's) and, on a
bridge-networked node, gpupool's user network (networks.py). :func:`create_and_start`
then, in this order: removes a container left at the plan's name by an earlier try (only
when its owner label is the owner's, owners.py), builds the host config, creates the
container, opens the plan's writable bind-mounted folders to the container's user, puts
the caller's files into the home, and starts it. Every call goes to the node's engine
through Engines (the node's thread pool and client).

What a failed start leaves is the caller's to remove, as it also undoes its own steps
before this one (a reservation, a pull) and each reports it its own way; ``creating``
tells it the moment after which a container may exist.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import IO

from .catalog.models import Node
from .container import HOME, ContainerPlan, open_dir_tar
from .engines import Engines
from .networks import ensure_user_network
from .owners import home_for, remove_own_container


async def prepare_node(engines: Engines, node: Node, owner: str) -> str:
    """The name of ``owner``'s home volume on ``node`` (made when there is none), with
    gpupool's user network made or checked first on a bridge-networked node. NotYours
    when the home's name is someone else's; UnsafeNetwork when the network is not safe."""
    home = await home_for(engines, node, owner)
    if node.network == "bridge":
        await ensure_user_network(engines, node)
    return home


async def create_and_start(
    engines: Engines,
    node: Node,
    plan: ContainerPlan,
    owner: str,
    *,
    labels: dict[str, str] | None = None,
    home_files: Callable[[IO[bytes]], None] | None = None,
    creating: Callable[[], None] | None = None,
    created: Callable[[str], None] | None = None,
) -> str:
    """Create ``plan``'s container on ``node`` and start it; its id.

    ``labels``: what a stale container at the plan's name must also carry to be removed
    (e.g. kind='training'), besides ``owner``'s label; NotYours when it does not.
    ``home_files(f)`` writes a tar into ``f`` that is put into the home folder before the
    start (in the node's thread pool). ``creating()`` is called just before the create
    call, ``created(id)`` just after it answered."""
    # a container left at this name by a crashed start or an interrupted launch is
    # replaced only when it is the owner's
    await remove_own_container(engines, node, plan.name, owner, **(labels or {}))
    client = engines.client(node)
    host_config = await engines.run(lambda: client.create_host_config(**plan.host_config), node)
    if creating is not None:
        creating()
    obj = await engines.call(
        node, "create_container", host_config=host_config, **plan.create_kwargs()
    )
    cid: str = obj["Id"]
    if created is not None:
        created(cid)
    for path in plan.writable:
        parent, tar = open_dir_tar(path)
        await engines.call(node, "put_archive", cid, parent, tar)
    if home_files is not None:
        write = home_files

        def put_home_files() -> None:
            with tempfile.TemporaryFile() as f:
                write(f)
                f.seek(0)
                client.put_archive(cid, HOME, f)

        await engines.run(put_home_files, node)
    await engines.call(node, "start", cid)
    return cid
