"""What the OpenAPI document allows, asked of a request body: the line between a 400 (the
body is not what the document allows) and a 422 (it is, but the pool refuses its content:
a spec the caller may not use, a graph that does not build). Handlers keep their own
checks, which name the field and what is allowed; this only decides the status."""

from __future__ import annotations

from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from .schemas import SCHEMAS


@cache
def _validator(schema: str) -> Draft202012Validator:
    # the document's own component schemas (schemas.py), so the check is the document's
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": {"schemas": SCHEMAS}}
    )


def allows(schema: str, value: Any) -> bool:
    """Whether ``value`` matches the document's component schema ``schema``."""
    return bool(_validator(schema).is_valid(value))


def first_problem(schema: str, value: Any) -> str | None:
    """What is wrong with ``value`` against the component schema ``schema``, naming the
    field (as a path like ``sessions/0/id``) and what is allowed; None when it matches."""
    errors = sorted(_validator(schema).iter_errors(value), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    e = errors[0]
    where = "/".join(str(p) for p in e.absolute_path) or "the body"
    return f"{where}: {e.message[:300]}"
