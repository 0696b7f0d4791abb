"""A synthetic, learnable classification task for trainings without a dataset download:
784 features (an MNIST-sized input), labels from a fixed random linear teacher. Used by
the training benchmark and the GPU tests (it needs only numpy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def teacher_task(folder: Path, samples: int = 60_000, seed: int = 0) -> Path:
    """``train.npz`` and ``test.npz`` (a tenth) in ``folder``, in the runner's numpy format."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, 784), dtype=np.float32)
    teacher = rng.standard_normal((784, 10), dtype=np.float32)
    y = (x @ teacher).argmax(axis=1).astype(np.int64)
    n_test = samples // 10
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "train.npz", x=x[n_test:], y=y[n_test:])
    np.savez(folder / "test.npz", x=x[:n_test], y=y[:n_test])
    return folder
