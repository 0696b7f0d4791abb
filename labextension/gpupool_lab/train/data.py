"""Datasets for the runner: NumPy arrays, CSV tables and image folders, as arrays.

Every loader gives ``Split(x_train, y_train, x_test, y_test)``; a dataset without its
own test part is split with the training's seed (``test_fraction`` held out). What is
looked for, in order:

- ``numpy``: ``train.npz`` + ``test.npz``, else one ``.npz`` (or the file itself), else
  ``x.npy`` + ``y.npy``. Inputs under ``x``/``X``/``data``/``inputs``, labels under
  ``y``/``labels``/``target``/``targets``.
- ``csv``: ``train.csv`` + ``test.csv``, else one ``.csv``; the label column is named
  ``label``, ``target``, ``y`` or ``class``, else it is the last one; a first row that is
  not numbers is the header.
- ``image-folder``: ``train/<class>/*.png`` + ``test/<class>/*.png``, else
  ``<class>/*.png``; classes sorted by name; PNG, JPEG (Pillow).

Errors are :class:`DataError` and say what was found and what was expected.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

X_KEYS = ("x", "X", "data", "inputs")
Y_KEYS = ("y", "labels", "target", "targets")
LABEL_COLUMNS = ("label", "target", "y", "class")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


class DataError(ValueError):
    pass


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...] = ()  # image folders: class names by label

    @property
    def classification(self) -> bool:
        return np.issubdtype(self.y_train.dtype, np.integer)

    def describe(self) -> str:
        kind = (
            f"{int(max(self.y_train.max(initial=0), self.y_test.max(initial=0))) + 1} classes"
            if self.classification
            else "regression"
        )
        return (
            f"{len(self.x_train)} training and {len(self.x_test)} test samples of shape "
            f"{tuple(self.x_train.shape[1:])}, {kind}"
        )


def _labels(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y).reshape(len(y), -1) if np.asarray(y).ndim > 1 else np.asarray(y)
    if y.ndim == 1 and (
        np.issubdtype(y.dtype, np.integer)
        or (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0) and y.min() >= 0)
    ):
        return y.astype(np.int64)
    return y.astype(np.float32)


def _pick(arrays: dict[str, np.ndarray], keys: tuple[str, ...], where: str) -> np.ndarray:
    for k in keys:
        if k in arrays:
            return arrays[k]
    raise DataError(f"{where}: no array named {', '.join(keys)}; it has {', '.join(arrays)}")


def _npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return _pick(arrays, X_KEYS, str(path)), _pick(arrays, Y_KEYS, str(path))


def _numpy(
    root: Path,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
    if root.is_file():
        return _npz(root), None
    if (root / "train.npz").is_file() and (root / "test.npz").is_file():
        return _npz(root / "train.npz"), _npz(root / "test.npz")
    npz = sorted(root.glob("*.npz"))
    if len(npz) == 1:
        return _npz(npz[0]), None
    if (root / "x.npy").is_file() and (root / "y.npy").is_file():
        return (np.load(root / "x.npy"), np.load(root / "y.npy")), None
    raise DataError(
        f"{root}: expected train.npz + test.npz, one .npz file, or x.npy + y.npy; found "
        f"{', '.join(sorted(p.name for p in root.iterdir())[:10]) or 'nothing'}"
    )


def _csv_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if not rows:
        raise DataError(f"{path}: empty")
    header: list[str] | None = None
    try:
        [float(v) for v in rows[0]]
    except ValueError:
        header, rows = [h.strip() for h in rows[0]], rows[1:]
    col = len(rows[0]) - 1
    if header:
        col = next((header.index(c) for c in LABEL_COLUMNS if c in header), col)
    try:
        table = np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    except ValueError as e:
        raise DataError(f"{path}: every value must be a number ({e})") from None
    return np.delete(table, col, axis=1), table[:, col]


def _csv(root: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
    if root.is_file():
        return _csv_file(root), None
    if (root / "train.csv").is_file() and (root / "test.csv").is_file():
        return _csv_file(root / "train.csv"), _csv_file(root / "test.csv")
    files = sorted(root.glob("*.csv"))
    if len(files) == 1:
        return _csv_file(files[0]), None
    raise DataError(f"{root}: expected train.csv + test.csv or one .csv file")


def _image_classes(root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - the trainer image has Pillow
        raise DataError("image folders need Pillow (pip install pillow)") from None
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    xs, ys = [], []
    for label, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            with Image.open(f) as im:
                a = np.asarray(im.convert("L" if im.mode in ("1", "L", "P", "I") else "RGB"))
            xs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
            ys.append(label)
    if not xs:
        raise DataError(f"{root}: expected one folder of images per class")
    shapes = {x.shape for x in xs}
    if len(shapes) > 1:
        raise DataError(f"{root}: images differ in size ({', '.join(map(str, sorted(shapes)))})")
    return np.stack(xs).astype(np.float32), np.array(ys, dtype=np.int64), classes


def load(path: str | Path, fmt: str, *, test_fraction: float, seed: int) -> Split:
    root = Path(path)
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist in the container")
    classes: list[str] = []
    if fmt == "numpy":
        train, test = _numpy(root)
    elif fmt == "csv":
        train, test = _csv(root)
    elif fmt == "image-folder":
        if (root / "train").is_dir() and (root / "test").is_dir():
            xa, ya, classes = _image_classes(root / "train")
            xb, yb, _ = _image_classes(root / "test")
            train, test = (xa, ya), (xb, yb)
        else:
            xa, ya, classes = _image_classes(root)
            train, test = (xa, ya), None
    else:
        raise DataError(f"format {fmt!r} cannot be trained on; allowed: numpy, csv, image-folder")
    x, y = np.asarray(train[0]), _labels(np.asarray(train[1]))
    if len(x) != len(y):
        raise DataError(f"{root}: {len(x)} inputs but {len(y)} labels")
    if test is None:
        order = np.random.default_rng(seed).permutation(len(x))
        n_test = max(1, round(len(x) * test_fraction))
        te, tr = order[:n_test], order[n_test:]
        return Split(x[tr], y[tr], x[te], y[te], tuple(classes))
    return Split(x, y, np.asarray(test[0]), _labels(np.asarray(test[1])), tuple(classes))
