"""Who may do what in the pool: custom JupyterHub scopes, the roles that grant them,
and the identity of a caller as the hub reports it.

Least privilege: a plain user gets ``custom:gpupool:use`` (own reservations, specs,
node capacity), an observer ``custom:gpupool:observe`` (read everything), a pool admin
``custom:gpupool:admin`` (everything, for anyone). The pool service's own hub token
needs no scopes beyond identifying callers' tokens, which every service may do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

USE = "custom:gpupool:use"
OBSERVE = "custom:gpupool:observe"
ADMIN = "custom:gpupool:admin"
SPAWN = "custom:gpupool:spawn"

CUSTOM_SCOPES: dict[str, dict[str, Any]] = {
    USE: {
        "description": "Use the GPU pool: see specs and node capacity, reserve and release your own GPU slices.",
    },
    OBSERVE: {
        "description": "Read the whole GPU pool: every node and every user's reservations (no changes).",
    },
    SPAWN: {
        "description": "Reserve and release GPU slices on behalf of users (the hub's spawner).",
        "subscopes": [USE],
    },
    ADMIN: {
        "description": "Administer the GPU pool: reserve and release for anyone, drain and undrain nodes.",
        "subscopes": [USE, OBSERVE, SPAWN],
    },
}


def pool_roles(
    admin_users: Iterable[str] = (),
    admin_groups: Iterable[str] = (),
    observer_users: Iterable[str] = (),
    observer_groups: Iterable[str] = (),
    admin_services: Iterable[str] = (),
    spawner_services: Iterable[str] = (),
    observer_services: Iterable[str] = (),
    culler_services: Iterable[str] = (),
    service: str = "gpupool",
) -> list[dict[str, Any]]:
    """Roles for ``c.JupyterHub.load_roles``: every user may use the pool; named
    users, groups and services observe or administer it."""
    return [
        # Redefines the hub's default 'user' role: its usual 'self' plus use of the pool.
        {
            "name": "user",
            "description": "A hub user who may use the GPU pool",
            # access:services lists the pool in the hub's Services menu and lets its pages log in
            "scopes": ["self", USE, "access:services!service=gpupool"],
        },
        {
            "name": "gpupool-observer",
            "description": "Reads the whole GPU pool",
            "scopes": [OBSERVE, USE],
            "users": list(observer_users),
            "groups": list(observer_groups),
        },
        {
            # Prometheus and dashboards: read the pool, nothing else (not even reserve)
            "name": "gpupool-metrics",
            "description": "Reads the GPU pool's health and metrics",
            "scopes": [OBSERVE],
            "services": list(observer_services),
        },
        {
            "name": "gpupool-admin",
            "description": "Administers the GPU pool",
            "scopes": [ADMIN, "read:users:name", "read:groups:name"],
            "users": list(admin_users),
            "groups": list(admin_groups),
            "services": list(admin_services),
        },
        {
            # The pool service reads a user's groups and roles: they decide the specs a
            # reservation made on the user's behalf may use.
            "name": "gpupool-service",
            "description": "The pool service: reads users' names, groups and roles",
            # servers: it stops a user's server for an admin (pool page) and when the
            # server's GPUs stayed idle (idle.py)
            "scopes": ["read:users:name", "read:users:groups", "read:roles:users", "servers"],
            "services": [service],
        },
        {
            # jupyterhub-idle-culler: sees activity, stops idle servers, nothing else
            "name": "gpupool-idle-culler",
            "description": "Stops servers with no activity in the lab",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": list(culler_services),
        },
        {
            "name": "gpupool-spawner",
            "description": "The hub's spawner: reserves and releases for users, nothing else",
            "scopes": [SPAWN],
            "services": list(spawner_services),
        },
    ]


@dataclass(frozen=True)
class Caller:
    """A user or service as the hub identified it from its token."""

    name: str
    kind: str  # "user" | "service"
    scopes: frozenset[str] = field(default_factory=frozenset)
    groups: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_hub_model(cls, model: dict[str, Any]) -> Caller:
        return cls(
            name=model["name"],
            kind=model.get("kind", "user"),
            scopes=frozenset(model.get("scopes", ())),
            groups=frozenset(model.get("groups") or ()),
        )

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    @property
    def acts_for_others(self) -> bool:
        """May reserve for, see and release any user's reservations (admins, the spawner)."""
        return self.is_admin or SPAWN in self.scopes

    @property
    def can_observe(self) -> bool:
        return self.is_admin or OBSERVE in self.scopes

    @property
    def can_use(self) -> bool:
        return self.is_admin or USE in self.scopes

    def may_see(self, owner: str) -> bool:
        return self.can_observe or self.acts_for_others or (self.can_use and owner == self.name)

    def may_change(self, owner: str) -> bool:
        return self.acts_for_others or (self.can_use and owner == self.name)
