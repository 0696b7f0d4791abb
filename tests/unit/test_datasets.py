"""Datasets as a server sees them (gpupool.lab.datasets) and the DatasetPicker's checks:
names that would reach outside the allowed roots are refused (``..``, ``%2e%2e`` and
double-encoded, absolute, ``~``, backslash, NUL, symlinks out), with an error naming what
was wrong and what is allowed, and the picker's state unchanged; listings skip hidden
folders and symlinks; previews (image grid from .npy, table head, .npz, image folders)
read only the standard library."""

from __future__ import annotations

import ast
import base64
import struct
import zipfile
from pathlib import Path

import pytest
import traitlets

from gpupool.lab.datasets import (
    DatasetPathError,
    catalog_entries,
    home_entries,
    preview,
    resolve,
)
from gpupool.lab.widgets import DatasetPicker


def npy(shape: tuple[int, ...], values: list[int] | None = None, dtype: str = "|u1") -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    n = 1
    for d in shape:
        n *= d
    values = values if values is not None else [i % 256 for i in range(n)]
    code = {"|u1": "B", "<f4": "f", "<i8": "q"}[dtype]
    return (
        b"\x93NUMPY\x01\x00"
        + struct.pack("<H", len(header))
        + header
        + struct.pack(f"<{n}{code}", *values)
    )


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path, Path]:
    datasets, home, outside = tmp_path / "datasets", tmp_path / "home", tmp_path / "secret"
    for d in (datasets / "digits", home / "data", outside):
        d.mkdir(parents=True)
    (outside / "passwd").write_text("root:x:0:0")
    (datasets / "digits" / "images.npy").write_bytes(npy((20, 8, 8)))
    (home / "data" / "table.csv").write_text("a,b\n1,2\n3,4\n")
    (home / "data" / "notes.txt").write_text("hello\n")
    (home / "data" / "model.bin").write_bytes(b"\x00")  # not a supported kind
    (home / ".hidden").mkdir()
    (home / ".hidden" / "x.csv").write_text("a\n")
    (home / "escape").symlink_to(outside)  # a symlink out of the home
    (home / "data" / "link.csv").symlink_to(outside / "passwd")
    return datasets, home, outside


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../secret/passwd", "'..' leaves the folder"),
        ("digits/../../secret", "'..' leaves the folder"),
        ("%2e%2e/secret/passwd", "'..' leaves the folder"),
        ("%2E%2E%2Fsecret", "'..' leaves the folder"),
        ("%252e%252e/secret", "'..' leaves the folder"),
        ("/etc/passwd", "an absolute path"),
        ("%2Fetc%2Fpasswd", "an absolute path"),
        ("~/x", "an absolute path"),
        ("..\\secret", "NUL or backslash"),
        ("digits\x00.npy", "NUL or backslash"),
        ("", "empty"),
        ("dig%69ts", "percent-encoding"),
    ],
)
def test_resolve_refuses_names_that_leave_the_root(
    roots: tuple[Path, Path, Path], name: str, why: str
) -> None:
    datasets, _, _ = roots
    with pytest.raises(DatasetPathError) as e:
        resolve(datasets, name)
    assert why in str(e.value) and "allowed: a relative path inside" in str(e.value)


def test_resolve_refuses_symlinks_out_and_follows_those_inside(
    roots: tuple[Path, Path, Path],
) -> None:
    _, home, _ = roots
    with pytest.raises(DatasetPathError, match="symlink that leads out"):
        resolve(home, "escape/passwd")
    with pytest.raises(DatasetPathError, match="symlink that leads out"):
        resolve(home, "data/link.csv")
    (home / "alias").symlink_to(home / "data")
    assert resolve(home, "alias/table.csv") == (home / "data" / "table.csv").resolve()
    assert resolve(home, "data/table.csv") == (home / "data" / "table.csv").resolve()


def test_home_listing_skips_hidden_unsupported_and_symlinks(roots: tuple[Path, Path, Path]) -> None:
    _, home, _ = roots
    names = {e.name: e for e in home_entries(home)}
    assert set(names) == {"data/table.csv", "data/notes.txt"}
    assert names["data/table.csv"].format == "csv" and names["data/table.csv"].size == 12


def test_catalog_entries_mark_missing_folders_and_skip_bad_names(
    roots: tuple[Path, Path, Path],
) -> None:
    datasets, _, _ = roots
    items = [
        {"name": "digits", "format": "numpy", "description": "8x8 digits"},
        {"name": "absent", "format": "csv"},
        {"name": "../secret", "format": "other"},  # a pool that misbehaves is not followed
    ]
    got = {e.name: e for e in catalog_entries(items, datasets)}
    assert set(got) == {"digits", "absent"}
    assert got["digits"].available and got["digits"].files == 1
    assert not got["absent"].available and got["absent"].size is None


def test_previews(roots: tuple[Path, Path, Path], tmp_path: Path) -> None:
    datasets, home, _ = roots
    p = preview(datasets / "digits", "numpy")
    arr = p["arrays"]["images.npy"]
    assert arr["shape"] == [20, 8, 8] and arr["dtype"] == "|u1"
    assert len(arr["images"]) == 16
    png = base64.b64decode(arr["images"][0].split(",", 1)[1])
    assert png.startswith(b"\x89PNG") and struct.unpack(">II", png[16:24]) == (8, 8)
    assert preview(home / "data" / "table.csv", "csv") == {
        "table": [["a", "b"], ["1", "2"], ["3", "4"]]
    }
    flat = tmp_path / "flat.npy"  # (N, 64): 8x8 images, float
    flat.write_bytes(npy((3, 64), [float(i) for i in range(192)], "<f4"))
    assert len(preview(flat, "numpy")["arrays"]["flat"]["images"]) == 3
    labels = tmp_path / "labels.npy"  # 1-D: a shape, no images
    labels.write_bytes(npy((5,), [1, 2, 3, 4, 5], "<i8"))
    assert preview(labels, "numpy") == {"arrays": {"labels": {"shape": [5], "dtype": "<i8"}}}
    z = tmp_path / "d.npz"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("x.npy", npy((2, 4, 4)))
        f.writestr("y.npy", npy((2,)))
    arrays = preview(z, "numpy")["arrays"]
    assert arrays["x"]["shape"] == [2, 4, 4] and len(arrays["x"]["images"]) == 2
    folder = tmp_path / "imgs" / "cat"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(png)
    got = preview(tmp_path / "imgs", "image-folder")
    assert got["classes"] == ["cat"] and got["images"][0].startswith("data:image/png;base64,")
    assert ast.literal_eval(repr(got["classes"])) == ["cat"]


class NoPool:
    def datasets(self) -> list[dict[str, str]]:
        return [{"name": "digits", "format": "numpy", "description": "8x8 digits"}]


def test_picker_lists_previews_and_refuses_traversal_leaving_state_unchanged(
    roots: tuple[Path, Path, Path],
) -> None:
    datasets, home, _ = roots
    picker = DatasetPicker(home=home, datasets_root=datasets, pool=NoPool())  # type: ignore[arg-type]
    keys = [d["key"] for d in picker.datasets]
    assert keys == ["catalog:digits", "home:data/notes.txt", "home:data/table.csv"]
    picker.select("digits")
    assert picker.value == {
        "name": "digits",
        "source": "catalog",
        "path": str((datasets / "digits").resolve()),
        "format": "numpy",
        "read_only": True,
    }
    assert len(picker.preview["arrays"]["images.npy"]["images"]) == 16
    for bad in (
        "home:../secret/passwd",
        "home:%2e%2e/secret/passwd",
        "catalog:/etc/passwd",
        "home:escape/passwd",
        "home:data/link.csv",
        "elsewhere:digits",
        "home:data/model.bin",  # inside the home, but not listed
    ):
        with pytest.raises(traitlets.TraitError):
            picker.selected = bad
        assert picker.selected == "catalog:digits" and picker.value["name"] == "digits"


def test_picker_without_a_pool_says_so_and_lists_the_home(roots: tuple[Path, Path, Path]) -> None:
    datasets, home, _ = roots

    class Down:
        def datasets(self) -> list[dict[str, str]]:
            raise OSError("connection refused")

    picker = DatasetPicker(home=home, datasets_root=datasets, pool=Down())  # type: ignore[arg-type]
    assert "catalog is not available: connection refused" in picker.error
    assert [d["source"] for d in picker.datasets] == ["home", "home"]
    assert picker.value is None
