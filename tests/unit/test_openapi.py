"""The OpenAPI document lists every route of the pool API, and nothing that is not one."""

from __future__ import annotations

import re

from tornado import web

from gpupool.pool import idle, ledger, watchdog
from gpupool.pool.openapi import openapi_document
from gpupool.pool.service import api_routes as routes
from gpupool.pool.web import NotFoundHandler

PREFIX = "/services/gpupool/"


def _as_openapi(pattern: str) -> str | None:
    api = PREFIX.rstrip("/") + "/api"
    if not pattern.startswith(api):
        return None
    path = pattern[len(api) :].replace("\\.", ".").rstrip("?").rstrip("/") or "/"
    out = []
    for part in path.split("/"):
        if part.startswith("("):
            out.append("(drain|undrain)" if "|" in part else "{param}")
        else:
            out.append(part)
    return "/".join(out) or "/"


def test_every_route_is_documented() -> None:
    doc = openapi_document(PREFIX)["paths"]
    documented = {re.sub(r"\{[a-z]+\}", "{param}", p) for p in doc}
    for pattern, handler in routes(PREFIX):
        path = _as_openapi(pattern)
        if path is None or handler is NotFoundHandler:
            continue
        if "(drain|undrain)" in path:
            wanted = [path.replace("(drain|undrain)", a) for a in ("drain", "undrain")]
        else:
            wanted = [path]
        for w in wanted:
            assert w in documented, f"{pattern} is not in the OpenAPI document"
    assert len(documented) == len(doc)


def _operations() -> dict[str, tuple[str, type[web.RequestHandler]]]:
    """Documented path -> (route pattern, handler)."""
    out = {}
    for pattern, handler in routes(PREFIX):
        path = _as_openapi(pattern)
        if path is None or handler is NotFoundHandler:
            continue
        for p in (
            [path.replace("(drain|undrain)", a) for a in ("drain", "undrain")]
            if "(drain|undrain)" in path
            else [path]
        ):
            out[p] = (pattern, handler)
    return out


def test_the_methods_documented_are_the_methods_answered() -> None:
    """What the document lists per path is what the handler answers, and what a 405's
    Allow header names (BaseHandler.allowed_methods)."""
    doc = openapi_document(PREFIX)["paths"]
    ops = _operations()
    for path, item in doc.items():
        _pattern, handler = ops[re.sub(r"\{[a-z]+\}", "{param}", path)]
        answered = [
            m.lower()
            for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if getattr(handler, m.lower()) is not getattr(web.RequestHandler, m.lower())
        ]
        assert sorted(item) == sorted(answered), path


def test_path_parameters_carry_the_routes_patterns() -> None:
    """A value the document allows reaches the handler: the pattern of each path parameter
    is the route's group, anchored."""
    doc = openapi_document(PREFIX)["paths"]
    ops = _operations()
    for path, item in doc.items():
        pattern, _ = ops[re.sub(r"\{[a-z]+\}", "{param}", path)]
        groups = [
            g for g in re.findall(r"\(([^()]*(?:\([^()]*\))?[^()]*)\)", pattern) if "|" not in g
        ]
        for op in item.values():
            params = [p for p in op.get("parameters", []) if p["in"] == "path"]
            assert len(params) == len(groups), path
            for p, g in zip(params, groups, strict=True):
                assert p["schema"]["pattern"] == f"^{g}$", (path, p)


def test_every_status_is_documented_with_a_json_error_and_every_write_its_limits() -> None:
    doc = openapi_document(PREFIX)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            answers = op["responses"]
            if op.get("security") != []:
                assert {"401", "403"} <= set(answers), (method, path)
            if method in ("post", "delete"):
                assert {"413", "429"} <= set(answers), (method, path)
            if "{" in path:
                assert "404" in answers, (method, path)
            for code, answer in answers.items():
                if code.startswith(("4", "5")):
                    assert "application/json" in answer["content"], (method, path, code)


def test_notice_kinds_are_the_ones_the_pool_sends() -> None:
    doc = openapi_document(PREFIX)
    get = doc["paths"]["/notices"]["get"]
    item = get["responses"]["200"]["content"]["application/json"]["schema"]
    kinds = item["properties"]["notices"]["items"]["properties"]["kind"]["enum"]
    assert sorted(kinds) == sorted({idle.KIND, watchdog.KIND, ledger.STOP_PENDING})


def test_links_lead_from_what_a_post_creates_to_the_operations_on_it() -> None:
    doc = openapi_document(PREFIX)["paths"]
    for path in ("/reservations", "/trainings"):
        links = doc[path]["post"]["responses"]["201"]["links"]
        assert links
        for link in links.values():
            ref = link["operationRef"].removeprefix("#/paths/")
            target, verb = ref.rsplit("/", 1)
            assert verb in doc[target.replace("~1", "/")], ref
            assert link["parameters"] == {"id": "$response.body#/id"}
