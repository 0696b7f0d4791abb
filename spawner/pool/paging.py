"""Pages of the API's lists: ``limit`` items after ``cursor``, in the list's order.

Lists sorted by (time, id) take a keyset cursor that says where the last page ended:
``<microseconds since 1970 UTC>~<id>``. Any cursor of that form is a position in the list
(one that names no item starts after it), so what the OpenAPI document allows the API
takes; what does not match it is a 400 that says what a cursor is.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any, TypeVar

from .patterns import ID_RE

T = TypeVar("T")

PAGE_DEFAULT = 200  # items per page of a list when the caller does not say
PAGE_MAX = 1000
CURSOR_RE = rf"[0-9]{{1,16}}~{ID_RE}"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class BadPage(ValueError):
    """A ``limit`` or ``cursor`` this API does not take; the message says what it takes."""


def page_limit(raw: str | None) -> int:
    if raw is None:
        return PAGE_DEFAULT
    n = int(raw) if re.fullmatch(r"[0-9]{1,7}", raw) else 0
    if not 1 <= n <= PAGE_MAX:
        raise BadPage(f"limit must be a whole number from 1 to {PAGE_MAX} (default {PAGE_DEFAULT})")
    return n


def time_page(limit: str | None, cursor: str | None) -> tuple[int, tuple[dt.datetime, str] | None]:
    """A list's page arguments, for a list sorted by (time, id): the page size and the
    (time, id) of the last item seen (None: from the start). BadPage says what is wrong."""
    n = page_limit(limit)
    if cursor is None:
        return n, None
    if not re.fullmatch(CURSOR_RE, cursor):
        raise BadPage(
            "cursor is not one this API gives: pass the 'next' of the previous page "
            "(<microseconds since 1970 UTC>~<id>)"
        )
    micros, last = cursor.split("~", 1)
    return n, (EPOCH + dt.timedelta(microseconds=int(micros)), last)


def time_cursor(at: dt.datetime, last: str) -> str:
    """The ``next`` of a page sorted by (time, id) whose last item is (at, last)."""
    at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)  # stored in UTC
    return f"{(at - EPOCH) // dt.timedelta(microseconds=1)}~{last}"


def page_of(
    found: list[T], limit: int, position: Callable[[T], tuple[dt.datetime, str]]
) -> tuple[list[T], str | None]:
    """The page out of what a list gave when asked for ``limit + 1`` items (one more than
    a page, to learn whether another follows), and its ``next``: the cursor after its last
    item, or None on the last page. ``position`` is an item's (time, id)."""
    if len(found) <= limit:
        return found, None
    page = found[:limit]
    return page, time_cursor(*position(page[-1]))


def openapi_parameters() -> list[dict[str, Any]]:
    """``limit`` and ``cursor`` as the OpenAPI document describes them."""
    return [
        {
            "name": "limit",
            "in": "query",
            "description": f"items per page (default {PAGE_DEFAULT})",
            "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX},
        },
        {
            "name": "cursor",
            "in": "query",
            "description": "where the previous page ended: its 'next' "
            "(<microseconds since 1970 UTC>~<id of its last item>); none: the first page",
            "schema": {"type": "string", "pattern": f"^{CURSOR_RE}$"},
        },
    ]
