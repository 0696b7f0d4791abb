"""The OpenAPI document lists every route of the pool API, and nothing that is not one."""

from __future__ import annotations

import re

from gpupool.pool.api import routes
from gpupool.pool.openapi import openapi_document

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
    for pattern, _handler in routes(PREFIX):
        path = _as_openapi(pattern)
        if path is None:
            continue
        if "(drain|undrain)" in path:
            wanted = [path.replace("(drain|undrain)", a) for a in ("drain", "undrain")]
        else:
            wanted = [path]
        for w in wanted:
            assert w in documented, f"{pattern} is not in the OpenAPI document"
    assert len(documented) == len(doc)
