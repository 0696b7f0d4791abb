"""Sizes in the catalog (``parse_size_mib``, ``format_mib``): the units accepted, what is
refused and why, and that formatting then parsing gives the same number."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpupool.catalog import (
    format_mib,
    parse_size_mib,
)
from gpupool.catalog.units import SIZE_HELP
from tests.unit.catalog_edits import (
    GIB,
    TIB,
)


# -- units -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "mib"),
    [
        ("512MiB", 512),
        ("512Mi", 512),
        ("512M", 512),
        ("512MB", 512),
        ("20GiB", 20 * GIB),
        ("20gib", 20 * GIB),
        ("20 GiB", 20 * GIB),
        ("  20Gi  ", 20 * GIB),
        ("20G", 20 * GIB),
        ("20GB", 20 * GIB),
        ("1.5GiB", 1536),
        ("0.5GiB", 512),
        ("2TiB", 2 * TIB),
        ("2T", 2 * TIB),
        ("2tb", 2 * TIB),
        ("0.25TiB", 256 * GIB),
        ("1MiB", 1),
    ],
)
def test_parse_size_mib(text: str, mib: int) -> None:
    got = parse_size_mib(text)
    assert got == mib
    assert isinstance(got, int)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (32, f"32 has no unit; write {SIZE_HELP}"),
        (1.5, f"1.5 has no unit; write {SIZE_HELP}"),
        (0, f"0 has no unit; write {SIZE_HELP}"),
        (True, f"must be {SIZE_HELP}, got True"),
        (None, f"must be {SIZE_HELP}, got None"),
        (["20GiB"], f"must be {SIZE_HELP}, got ['20GiB']"),
        ("32", f"'32' is not {SIZE_HELP}"),
        ("32XB", f"'32XB' is not {SIZE_HELP}"),
        ("GiB", f"'GiB' is not {SIZE_HELP}"),
        ("", f"'' is not {SIZE_HELP}"),
        ("-1GiB", f"'-1GiB' is not {SIZE_HELP}"),
        ("1,5GiB", f"'1,5GiB' is not {SIZE_HELP}"),
        ("20 GiB RAM", f"'20 GiB RAM' is not {SIZE_HELP}"),
        ("1KiB", f"'1KiB' is not {SIZE_HELP}"),
        ("0GiB", "'0GiB' must be a positive whole number of MiB"),
        ("0.5MiB", "'0.5MiB' must be a positive whole number of MiB"),
        ("1.0001GiB", "'1.0001GiB' must be a positive whole number of MiB"),
    ],
)
def test_parse_size_mib_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_size_mib(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("mib", "text"),
    [
        (0, "0 MiB"),
        (1, "1 MiB"),
        (300, "300 MiB"),
        (1023, "1023 MiB"),
        (1024, "1 GiB"),
        (1536, "1.5 GiB"),
        (20 * GIB, "20 GiB"),
        (80 * GIB, "80 GiB"),
        (1100, "1.1 GiB"),
        (TIB, "1 TiB"),
        (4 * TIB, "4 TiB"),
        (TIB + GIB, "1025 GiB"),
        (TIB + 512, "1024.5 GiB"),
    ],
)
def test_format_mib(mib: int, text: str) -> None:
    assert format_mib(mib) == text


@given(st.integers(min_value=1, max_value=1023) | st.integers(1, 4096).map(lambda n: n * GIB))
def test_format_then_parse_round_trips(mib: int) -> None:
    assert parse_size_mib(format_mib(mib)) == mib
