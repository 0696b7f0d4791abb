"""Pages of the API's lists: bounded limits, and keyset cursors that any value of the
documented form is a position of (what the OpenAPI document allows, the API takes)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from gpupool.pool.paging import CURSOR_RE, BadPage, page_limit, page_of, time_cursor, time_page


def test_pages_take_a_bounded_limit() -> None:
    assert page_limit(None) == 200 and page_limit("5") == 5
    for bad in ("", "0", "-1", "1001", "ten", "1e3", "٣", "99999999999999999999"):
        with pytest.raises(BadPage, match="from 1 to 1000"):
            page_limit(bad)


def test_a_cursor_is_where_the_last_page_ended() -> None:
    at = dt.datetime(2026, 12, 2, 6, 0, 0, 123456, tzinfo=dt.UTC)
    cursor = time_cursor(at, "r-1")
    assert re.fullmatch(CURSOR_RE, cursor)
    assert time_page("10", cursor) == (10, (at, "r-1"))
    # a naive time from the database is UTC: the same cursor
    assert time_cursor(at.replace(tzinfo=None), "r-1") == cursor
    assert time_page(None, None) == (200, None)


def test_any_cursor_of_the_documented_form_is_a_position_and_others_are_refused() -> None:
    # the largest the pattern allows is still a time (year 2286): never a 500
    _, (at, last) = time_page(None, "9" * 16 + "~z" + "9" * 63)  # type: ignore[misc]
    assert at.year == 2286 and len(last) == 64
    for bad in ("", "nonsense", "1~", "~r-1", "12~-r", "1" * 17 + "~r", "12~r/1", "e30"):
        with pytest.raises(BadPage, match="cursor is not one this API gives"):
            time_page(None, bad)


def test_a_page_is_cut_from_one_item_more_and_says_where_the_next_starts() -> None:
    at = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC)
    items = [(at + dt.timedelta(seconds=i), f"r-{i}") for i in range(3)]
    page, nxt = page_of(items, 2, lambda item: item)  # 3 fetched for a page of 2: more follow
    assert page == items[:2] and nxt == time_cursor(*items[1])
    assert time_page("2", nxt) == (2, items[1])
    assert page_of(items[:2], 2, lambda item: item) == (items[:2], None)  # the last page
    assert page_of([], 2, lambda item: item) == ([], None)
