"""Building blocks of the pool API's OpenAPI document, shared by the modules that
describe their own operations (each API module) and by the one that assembles them
(openapi.py)."""

from __future__ import annotations

from typing import Any

from .patterns import ID_RE


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERR = ref("Error")

# the token's answers, as the operations of specs, reservations, nodes, datasets, health
# and usage spell them out (openapi.py adds them to the others)
AUTH_ERRORS = {
    "401": json_answer(ERR, "No token was sent"),
    "403": json_answer(ERR, "The token lacks the scope this needs"),
}


def path_param(name: str, pattern: str = ID_RE) -> dict[str, Any]:
    """A path parameter; its pattern is the route's, so what the document allows reaches
    the operation (anything else is the API's JSON 404)."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": f"^{pattern}$"},
    }


def query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": "query", "schema": schema}
    if description:
        out["description"] = description
    return out


FLAG = {"type": "string", "enum": ["1", "0"]}  # a query switch: 1 on, 0 or absent off
