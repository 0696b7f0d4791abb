"""Plain-text tables for the lab's terminal commands (``gpupool status``, ``specs``,
``usage``, ``train list``): columns as wide as their widest cell, numbers right-aligned."""

from __future__ import annotations

from typing import Any, TextIO


def table(
    rows: list[list[Any]], head: list[str], out: TextIO, right: set[int] = frozenset()
) -> None:  # type: ignore[assignment]
    cells = [[("-" if v is None else str(v)) for v in r] for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(head)
    ]

    def line(vals: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(vals, widths, strict=True))
        ).rstrip()

    print(line(head), file=out)
    print(line(["-" * w for w in widths]), file=out)
    for r in cells:
        print(line(r), file=out)
