"""Answers of the pool API checked against its own OpenAPI document (jsonschema, draft
2020-12): the status is documented for the operation, and a JSON body matches the
schema documented for that status."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import requests
from jsonschema import Draft202012Validator

from gpupool.pool.openapi import openapi_document

PREFIX = "/services/gpupool/"


@cache
def _document() -> dict[str, Any]:
    return openapi_document(PREFIX)


@cache
def _paths() -> list[tuple[re.Pattern[str], str]]:
    out = []
    for path in _document()["paths"]:
        rx = re.escape(path).replace(r"\{", "{").replace(r"\}", "}")
        rx = re.sub(r"\{[a-z]+\}", "[^/]+", rx)
        out.append((re.compile(f"{rx}/?"), path))
    # literal paths before templated ones (/reservations/x/metrics vs /reservations/{id})
    return sorted(out, key=lambda p: p[1].count("{"))


def check_answer(r: requests.Response) -> requests.Response:
    """``r`` as the document promises it, else AssertionError naming the mismatch."""
    api = r.request.path_url.split("?", 1)[0]
    api = api[api.index(PREFIX.rstrip("/") + "/api") + len(PREFIX) + 3 :] or "/"
    path = next((p for rx, p in _paths() if rx.fullmatch(api)), None)
    method = (r.request.method or "").lower()
    if path is None or method not in _document()["paths"][path]:
        assert r.status_code in (404, 405), f"{method} {api}: undocumented, got {r.status_code}"
        return r
    answers = _document()["paths"][path][method]["responses"]
    answer = answers.get(str(r.status_code))
    assert answer is not None, (
        f"{method.upper()} {path}: status {r.status_code} is not documented "
        f"({', '.join(answers)}): {r.text[:300]}"
    )
    content = answer.get("content") or {}
    if "application/json" in content and r.content:
        schema = content["application/json"].get("schema", {})
        validator = Draft202012Validator({**schema, "components": _document()["components"]})
        errors = sorted(validator.iter_errors(r.json()), key=str)
        assert not errors, f"{method.upper()} {path} {r.status_code}: {errors[0].message}"
    elif content and r.content:
        kind = r.headers.get("Content-Type", "").split(";")[0]
        assert kind in content, f"{method.upper()} {path}: {kind} is not documented"
    return r
