"""The patterns of what the pool API takes in its paths and bodies, shared by the routes,
the handlers' checks and the OpenAPI document, so that what the document allows is what
the API takes (a value outside them is the API's JSON 404 in a path, a 400 in a body)."""

from __future__ import annotations

ID_RE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"  # an object's id or name in a path
CONTAINER_NAME_RE = r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}"  # Docker's rule for a container name
CONTAINER_ID_RE = r"[0-9a-f]{12,64}"  # a Docker container id, short or full
