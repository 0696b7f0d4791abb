"""Datasets as a user's server sees them: the pool's catalog (mounted under
``$GPUPOOL_DATASETS``, /datasets/<name>) and the supported files in the user's home.

Every name that arrives from outside (a widget, a training request) goes through
:func:`resolve`, which refuses what could reach outside its root: ``..`` (also written
``%2e%2e``), absolute paths, backslashes and NUL, and symlinks that lead out. Previews read
a bounded number of bytes and need nothing but the standard library (no numpy, no PIL):
the head of a table, array shapes and a grid of sample images as PNG data URLs.
"""

from __future__ import annotations

import ast
import base64
import csv
import io
import os
import struct
import urllib.parse
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".jsonl": "text"}
ARRAY_SUFFIXES = {".npy": "numpy", ".npz": "numpy"}
TEXT_SUFFIXES = {".txt": "text"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}
SUPPORTED = {**TABLE_SUFFIXES, **ARRAY_SUFFIXES, **TEXT_SUFFIXES}
MAX_SCAN = 2000  # entries looked at under a home folder
MAX_DEPTH = 3
PREVIEW_IMAGES = 16
PREVIEW_ROWS = 6
MAX_IMAGE_BYTES = 200_000


class DatasetPathError(ValueError):
    """A dataset name that would reach outside the allowed roots."""


def resolve(root: str | os.PathLike[str], name: str) -> Path:
    """``root/name``, refused unless it stays inside ``root`` after percent-decoding and
    following symlinks. The error names what was wrong and what is allowed."""
    allowed = f"allowed: a relative path inside {root}, without '..'"
    if not isinstance(name, str) or not name.strip():
        raise DatasetPathError(f"dataset name {name!r}: empty; {allowed}")
    decoded = name
    for _ in range(3):  # %252e%252e decodes twice
        decoded = urllib.parse.unquote(decoded)
    for raw in {name, decoded}:
        if "\x00" in raw or "\\" in raw:
            raise DatasetPathError(f"dataset name {name!r}: NUL or backslash; {allowed}")
        if raw.startswith("/") or raw.startswith("~") or Path(raw).is_absolute():
            raise DatasetPathError(f"dataset name {name!r}: an absolute path; {allowed}")
        if ".." in Path(raw).parts:
            raise DatasetPathError(f"dataset name {name!r}: '..' leaves the folder; {allowed}")
    if decoded != name:
        raise DatasetPathError(f"dataset name {name!r}: percent-encoding; {allowed}")
    base = Path(root).resolve()
    path = (base / name).resolve()
    if path != base and base not in path.parents:
        raise DatasetPathError(f"dataset name {name!r}: a symlink that leads out of {root}")
    return path


@dataclass(frozen=True)
class Entry:
    key: str  # "catalog:<name>" or "home:<relative path>"
    source: str  # catalog | home
    name: str
    path: str
    format: str
    description: str = ""
    size: int | None = None
    files: int | None = None
    read_only: bool = True
    available: bool = True

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _size(path: Path) -> tuple[int, int]:
    """Bytes and files under a path, bounded (a huge tree is not walked to the end)."""
    if path.is_file():
        return path.stat().st_size, 1
    total = count = 0
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                continue
            count += 1
            if count >= 100_000:
                return total, count
    return total, count


def catalog_entries(items: list[dict[str, Any]], root: str | os.PathLike[str]) -> list[Entry]:
    """The pool's catalog as found under ``root`` (a dataset whose folder is missing or
    empty on this node is listed as unavailable, not hidden)."""
    out = []
    for d in items:
        name = str(d.get("name", ""))
        try:
            path = resolve(root, name)
        except DatasetPathError:
            continue  # the pool sent a name it should not have: skip, never follow
        available = path.exists() and (path.is_file() or any(path.iterdir()))
        size, files = _size(path) if available else (None, None)
        out.append(
            Entry(
                key=f"catalog:{name}",
                source="catalog",
                name=name,
                path=str(path),
                format=str(d.get("format", "other")),
                description=str(d.get("description", "")),
                size=size,
                files=files,
                read_only=bool(d.get("read_only", True)),
                available=available,
            )
        )
    return out


def _is_image_folder(path: Path) -> bool:
    """Images directly inside, or in class subfolders (the torchvision ImageFolder way)."""
    try:
        children = list(path.iterdir())[:200]
    except OSError:
        return False
    if any(c.suffix.lower() in IMAGE_SUFFIXES for c in children if c.is_file()):
        return True
    subdirs = [c for c in children if c.is_dir() and not c.name.startswith(".")]
    for sub in subdirs[:20]:
        try:
            if any(f.suffix.lower() in IMAGE_SUFFIXES for f in list(sub.iterdir())[:50]):
                return True
        except OSError:
            continue
    return False


def home_entries(home: str | os.PathLike[str]) -> list[Entry]:
    """Supported files (tables, arrays, text) and image folders under the home folder,
    hidden folders skipped, symlinks not followed, at most MAX_DEPTH levels down."""
    base = Path(home).resolve()
    out: list[Entry] = []
    seen = 0
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        here = Path(dirpath)
        depth = len(here.relative_to(base).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        if depth >= MAX_DEPTH:
            dirnames[:] = []
        for d in list(dirnames):
            p = here / d
            if not p.is_symlink() and _is_image_folder(p):
                rel = str(p.relative_to(base))
                size, files = _size(p)
                out.append(
                    Entry(
                        f"home:{rel}", "home", rel, str(p), "image-folder", "", size, files, False
                    )
                )
                dirnames.remove(d)
        for f in sorted(filenames):
            seen += 1
            if seen > MAX_SCAN:
                return out
            p = here / f
            fmt = SUPPORTED.get(p.suffix.lower())
            if fmt is None or p.is_symlink() or f.startswith("."):
                continue
            rel = str(p.relative_to(base))
            out.append(
                Entry(f"home:{rel}", "home", rel, str(p), fmt, "", p.stat().st_size, 1, False)
            )
    return out


# -- previews -------------------------------------------------------------------------------
def _png(pixels: list[list[int]]) -> str:
    """A grayscale PNG data URL from rows of 0..255 values."""
    h, w = len(pixels), len(pixels[0]) if pixels else 0
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode()


_DTYPES = {"u1": "B", "i1": "b", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "i8": "q", "u8": "Q"}
_DTYPES |= {"f4": "f", "f8": "d"}


def _npy_header(f: io.BufferedIOBase) -> tuple[str, tuple[int, ...], bool]:
    if f.read(6) != b"\x93NUMPY":
        raise ValueError("not a .npy file")
    major = f.read(2)[0]
    n = struct.unpack("<H" if major == 1 else "<I", f.read(2 if major == 1 else 4))[0]
    header = ast.literal_eval(f.read(n).decode("latin1"))
    return header["descr"], tuple(header["shape"]), bool(header["fortran_order"])


def _npy_preview(f: io.BufferedIOBase) -> dict[str, Any]:
    descr, shape, fortran = _npy_header(f)
    out: dict[str, Any] = {"shape": list(shape), "dtype": descr}
    code = _DTYPES.get(descr.lstrip("<>|="))
    big = descr.startswith(">")
    if code is None or fortran or len(shape) < 2:
        return out
    n = shape[0]
    per = 1
    for d in shape[1:]:
        per *= d
    # an image per sample: (N, H, W), (N, H, W, 1|3), or (N, k*k) for a square k
    if len(shape) == 2:
        side = round(per**0.5)
        hw = (side, side) if side * side == per and side >= 4 else None
    else:
        hw = (shape[1], shape[2]) if len(shape) == 3 or shape[3] in (1, 3) else None
    if hw is None or hw[0] * hw[1] > 256 * 256:
        return out
    channels = per // (hw[0] * hw[1])
    size = struct.calcsize(code)
    count = min(n, PREVIEW_IMAGES)
    data = f.read(count * per * size)
    values = struct.unpack(f"{'>' if big else '<'}{len(data) // size}{code}", data)
    images = []
    for i in range(count):
        sample = values[i * per : (i + 1) * per]
        gray = [
            sum(sample[p * channels : (p + 1) * channels]) / channels for p in range(hw[0] * hw[1])
        ]
        lo, hi = min(gray), max(gray)
        span = (hi - lo) or 1
        rows = [
            [int(255 * (gray[r * hw[1] + c] - lo) / span) for c in range(hw[1])]
            for r in range(hw[0])
        ]
        images.append(_png(rows))
    out["images"] = images
    return out


def preview(path: str | os.PathLike[str], fmt: str) -> dict[str, Any]:
    """What the picker shows for a dataset: a table's head, arrays' shapes, sample images."""
    p = Path(path)
    if p.is_dir():
        return _folder_preview(p)
    suffix = p.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with p.open(newline="", errors="replace") as f:
            reader = csv.reader(f, delimiter="\t" if suffix == ".tsv" else ",")
            rows = [row for _, row in zip(range(PREVIEW_ROWS), reader, strict=False)]
        return {"table": rows}
    if suffix == ".npy":
        with p.open("rb") as f:
            return {"arrays": {p.stem: _npy_preview(f)}}
    if suffix == ".npz":
        arrays = {}
        with zipfile.ZipFile(p) as z:
            for info in z.infolist()[:8]:
                with z.open(info) as f:
                    arrays[info.filename.removesuffix(".npy")] = _npy_preview(f)  # type: ignore[arg-type]
        return {"arrays": arrays}
    if suffix in (".txt", ".jsonl"):
        with p.open(errors="replace") as f:
            return {
                "text": [
                    line.rstrip("\n")[:200] for _, line in zip(range(PREVIEW_ROWS), f, strict=False)
                ]
            }
    return {"note": f"no preview for {suffix or 'this file'}"}


def _folder_preview(p: Path) -> dict[str, Any]:
    images: list[str] = []
    arrays: dict[str, Any] = {}
    classes: list[str] = []
    for dirpath, dirnames, filenames in os.walk(p):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if Path(dirpath) == p:
            classes = list(dirnames)
        for f in sorted(filenames):
            fp = Path(dirpath) / f
            if fp.is_symlink():
                continue
            s = fp.suffix.lower()
            if (
                s in IMAGE_SUFFIXES
                and len(images) < PREVIEW_IMAGES
                and fp.stat().st_size < MAX_IMAGE_BYTES
            ):
                mime = "jpeg" if s in (".jpg", ".jpeg") else s[1:]
                images.append(
                    f"data:image/{mime};base64," + base64.b64encode(fp.read_bytes()).decode()
                )
            elif s == ".npy" and len(arrays) < 8:
                with fp.open("rb") as fh:
                    arrays[str(fp.relative_to(p))] = _npy_preview(fh)
        if len(images) >= PREVIEW_IMAGES and len(arrays) >= 8:
            break
    out: dict[str, Any] = {}
    if classes:
        out["classes"] = classes[:50]
    if images:
        out["images"] = images
    if arrays:
        out["arrays"] = arrays
    return out or {"note": "an empty folder"}
