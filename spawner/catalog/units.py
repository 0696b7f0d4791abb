"""Sizes with units, as people write them in the catalogs ("20GiB", "512MiB", "2TiB")."""

from __future__ import annotations

import re

_UNITS_MIB = {
    "mib": 1,
    "mi": 1,
    "m": 1,
    "mb": 1,
    "gib": 1024,
    "gi": 1024,
    "g": 1024,
    "gb": 1024,
    "tib": 1024 * 1024,
    "ti": 1024 * 1024,
    "t": 1024 * 1024,
    "tb": 1024 * 1024,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")
SIZE_HELP = "a size with a unit, such as '512MiB', '20GiB' or '2TiB'"


def parse_size_mib(value: object) -> int:
    """Return a size in MiB; raise ValueError naming what is allowed.

    A bare number is refused on purpose: "20" could be MiB or GiB, and a wrong
    guess hands out a thousand times too much or too little GPU memory.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"must be {SIZE_HELP}, got {value!r}")
    if isinstance(value, (int, float)):
        raise ValueError(f"{value!r} has no unit; write {SIZE_HELP}")
    m = _SIZE.match(value)
    if not m or m.group(2).lower() not in _UNITS_MIB:
        raise ValueError(f"{value!r} is not {SIZE_HELP}")
    mib = float(m.group(1)) * _UNITS_MIB[m.group(2).lower()]
    if mib <= 0 or mib != int(mib):
        raise ValueError(f"{value!r} must be a positive whole number of MiB")
    return int(mib)


def format_mib(mib: int) -> str:
    """Human form of a MiB count: 20480 -> '20 GiB', 1536 -> '1.5 GiB', 300 -> '300 MiB'."""
    if mib >= 1024 * 1024 and mib % (1024 * 1024) == 0:
        return f"{mib // (1024 * 1024)} TiB"
    if mib >= 1024:
        gib = mib / 1024
        return f"{gib:g} GiB" if gib == int(gib) else f"{gib:.1f} GiB"
    return f"{mib} MiB"
