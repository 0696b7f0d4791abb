"""The OpenAPI 3.1 document of the pool API, served at ``<prefix>/api/openapi.json``:
assembled from the operations each API module describes and the component schemas
(schemas.py), with the answers every operation may give added to each."""

from __future__ import annotations

import copy
from typing import Any

from gpupool import __version__

from . import (
    datasets_api,
    health_api,
    nodes_api,
    reservations_api,
    specs_api,
    ssh_api,
    usage_api,
)
from .openapi_parts import AUTH_ERRORS, ERR, json_answer
from .schemas import SCHEMAS
from .trainings import api as trainings_api

# the modules that describe their operations, in the document's order
DESCRIBED = (
    specs_api,
    datasets_api,
    reservations_api,
    ssh_api,
    nodes_api,
    health_api,
    usage_api,
    trainings_api,
)

# the document's own entry points (served by root_api.py, which serves this document)
OWN_PATHS: dict[str, Any] = {
    "/": {
        "get": {
            "summary": "Index of the API",
            "responses": {"200": {"description": "links"}, **AUTH_ERRORS},
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "OpenAPI"}},
        }
    },
}

# Answers any operation may give, whatever it does: the token (401, 403), the body size
# (413) and the per-user write limit (429) of the base handler.
_COMMON = {
    "401": "No token was sent",
    "403": "The hub does not accept the token, or it lacks the scope this needs",
}
_WRITES = {
    "413": "The request body is larger than this endpoint takes",
    "429": "Too many changes a minute for one user; see Retry-After",
}


def openapi_document(prefix: str = "/services/gpupool/") -> dict[str, Any]:
    doc = _skeleton(prefix)
    links: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
    for module in DESCRIBED:
        # a copy: the links and common answers below are added to it, not to the module's
        doc["paths"].update(copy.deepcopy(module.OPENAPI_PATHS))
        links.update(getattr(module, "OPENAPI_LINKS", {}))
    _links(doc, links)
    _common_answers(doc)
    return doc


def _skeleton(prefix: str) -> dict[str, Any]:
    """The document without the API modules' operations: what it is, where it is served,
    how to authenticate, the component schemas and its own paths."""
    server = prefix.rstrip("/") + "/api"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gpupool pool API",
            "version": __version__,
            "description": "GPU specs, reservations and nodes of a gpupool JupyterHub. "
            "Authenticate with a hub token: 'Authorization: token <token>'. "
            "Scopes: custom:gpupool:use (own reservations), custom:gpupool:observe (read all), "
            "custom:gpupool:admin (everything). Another user's reservation answers 404.",
        },
        "servers": [{"url": server}],
        "components": {
            "schemas": dict(SCHEMAS),
            "securitySchemes": {
                "hubToken": {"type": "apiKey", "in": "header", "name": "Authorization"},
            },
        },
        "security": [{"hubToken": []}],
        "paths": copy.deepcopy(OWN_PATHS),
    }


def _links(doc: dict[str, Any], links: dict[tuple[str, str], dict[str, tuple[str, str]]]) -> None:
    """OpenAPI links from what a POST creates to the operations on it, by its ``id``."""
    for (path, method), targets in links.items():
        op = doc["paths"][path][method]
        created = next(c for c in ("201", "202", "200") if c in op["responses"])
        op["responses"][created]["links"] = {
            name: {
                "operationRef": "#/paths/" + target.replace("/", "~1") + f"/{verb}",
                "parameters": {"id": "$response.body#/id"},
            }
            for name, (target, verb) in targets.items()
        }


def _common_answers(doc: dict[str, Any]) -> None:
    """Every operation documents the answers of the base handler and of its routes."""
    for path, item in doc["paths"].items():
        for method, op in item.items():
            answers = op.setdefault("responses", {})
            common = dict(_COMMON) if op.get("security") != [] else {}
            if method in ("post", "put", "patch", "delete"):
                common.update(_WRITES)
            if "{" in path:
                common.setdefault("404", "No such object, or one the caller may not see")
            params = op.get("parameters") or []
            if op.get("requestBody") or any(p.get("in") == "query" for p in params):
                common.setdefault("400", "A parameter or body this document does not allow")
            for code, why in common.items():
                answers.setdefault(code, json_answer(ERR, why))
