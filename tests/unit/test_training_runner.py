"""The runner (gpupool-train) with PyTorch on the CPU, outside any container: an MLP on
scikit-learn's digits, resuming from a checkpoint, two processes data-parallel (gloo,
torchrun) against one, the datasets it reads, and the error a user sees for a graph that
does not fit the data. The same runner inside trainer containers: tests/integration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpupool.graph.templates import mlp
from gpupool.job import ERROR_MARK, METRIC_MARK, hyperparameters, job_document
from gpupool.lab.train import data
from gpupool.localnode import export_digits

torch = pytest.importorskip("torch", reason="tests/run.sh installs the CPU wheel")
PY = sys.executable
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_digits(tmp_path_factory.mktemp("datasets") / "digits")


def write_job(folder: Path, dataset: Path | None, graph: dict[str, Any], **hyper: Any) -> Path:
    doc = job_document(
        training_id="t-0123456789ab",
        name="test",
        graph=graph,
        command=None,
        dataset={"name": "d", "path": str(dataset), "format": "numpy"} if dataset else None,
        hyper=hyperparameters(hyper),
        processes=1,
        attempt=1,
    )
    path = folder / "job.json"
    path.write_text(json.dumps(doc))
    return path


def run(job: Path, out: Path, *, procs: int = 1) -> subprocess.CompletedProcess[str]:
    args = ["-m", "gpupool.lab.train.runner", "--job", str(job), "--output", str(out)]
    if procs > 1:
        cmd = [TORCHRUN, "--standalone", f"--nproc_per_node={procs}", *args]
    else:
        cmd = [PY, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def records(out: Path, kind: str) -> list[dict[str, Any]]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_an_mlp_on_digits_trains_past_90_percent_and_leaves_a_loadable_model(
    digits: Path, tmp_path: Path
) -> None:
    graph = mlp(inputs=64, hidden=64, classes=10).to_json()
    out = tmp_path / "out"
    r = run(write_job(tmp_path, digits, graph, epochs=3, learning_rate=0.01), out)
    assert r.returncode == 0, r.stdout + r.stderr
    epochs = records(out, "epoch")
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert epochs[-1]["test_accuracy"] > 0.9
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert len(records(out, "step")) >= 3 * 20
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "epoch-0001.pt",
        "epoch-0002.pt",
        "epoch-0003.pt",
    ]
    done = records(out, "done")[0]
    assert done["test_accuracy"] == epochs[-1]["test_accuracy"]
    # the metrics also went to stdout, where the pool reads them from the engine's log
    assert sum(line.startswith(METRIC_MARK) for line in r.stdout.splitlines()) >= 60
    # the snippet loads the model; it predicts the test set as well as the training said
    check = (
        done["snippet"]
        + "import numpy as np\n"
        + f"z = np.load({str(digits / 'test.npz')!r})\n"
        + "x = torch.from_numpy((z['x'] - MEAN) / STD).float().reshape(len(z['x']), 64)\n"
        + "acc = (model(x).argmax(1).numpy() == z['y']).mean()\n"
        + "print(acc)\n"
    )
    mean_std = (
        done["snippet"].split("(x - ")[1].split(")")[0],
        done["snippet"].split(") / ")[1].split(",")[0],
    )
    check = check.replace("MEAN", mean_std[0]).replace("STD", mean_std[1])
    got = subprocess.run([PY, "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert abs(float(got.stdout) - done["test_accuracy"]) < 0.02


def test_resume_from_the_last_checkpoint_does_not_repeat_finished_epochs(
    digits: Path, tmp_path: Path
) -> None:
    graph = mlp(inputs=64, hidden=32, classes=10).to_json()
    out = tmp_path / "out"
    assert (
        run(write_job(tmp_path, digits, graph, epochs=2, learning_rate=0.01), out).returncode == 0
    )
    first = records(out, "epoch")
    r = run(write_job(tmp_path, digits, graph, epochs=4, learning_rate=0.01), out)
    assert r.returncode == 0, r.stderr
    assert "resumed from epoch-0002.pt" in r.stdout
    assert records(out, "resume")[0]["epoch"] == 2
    after = records(out, "epoch")[len(first) :]
    assert [e["epoch"] for e in after] == [3, 4]
    assert after[0]["train_loss"] < first[0]["train_loss"]  # continued, not restarted


def test_two_processes_data_parallel_match_one(digits: Path, tmp_path: Path) -> None:
    """torchrun with two gloo processes: every global batch is split between them and the
    gradients averaged, so the losses match one process up to float summation order."""
    doc = mlp(inputs=64, hidden=32, classes=10).to_json()
    doc["nodes"] = [n for n in doc["nodes"] if n["type"] != "Dropout"]  # no per-rank randomness
    drop = next(e for e in doc["edges"] if e["to"] == "drop")["from"]
    doc["edges"] = [e for e in doc["edges"] if e["to"] != "drop" and e["from"] != "drop"]
    doc["edges"].append({"from": drop, "to": "fc2"})
    hyper = {"epochs": 3, "learning_rate": 0.01, "batch_size": 64}
    one, two = tmp_path / "one", tmp_path / "two"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    r1 = run(write_job(tmp_path / "a", digits, doc, **hyper), one)
    r2 = run(write_job(tmp_path / "b", digits, doc, **hyper), two, procs=2)
    assert r1.returncode == 0, r1.stderr
    assert r2.returncode == 0, r2.stdout[-2000:] + r2.stderr[-4000:]
    assert records(two, "start")[0]["processes"] == 2
    e1, e2 = records(one, "epoch"), records(two, "epoch")
    assert len(e1) == len(e2) == 3  # process 0 alone writes
    for a, b in zip(e1, e2, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-3)


def test_a_graph_that_does_not_fit_the_data_fails_with_what_to_change(
    digits: Path, tmp_path: Path
) -> None:
    graph = mlp(inputs=784, hidden=16, classes=10).to_json()
    r = run(write_job(tmp_path, digits, graph, epochs=1), tmp_path / "out")
    assert r.returncode == 2
    line = next(x for x in r.stdout.splitlines() if x.startswith(ERROR_MARK))
    msg = json.loads(line[len(ERROR_MARK) :])["message"]
    assert "Input takes samples of shape [784]" in msg and "[1, 8, 8]" in msg
    few = mlp(inputs=64, hidden=16, classes=5).to_json()
    r = run(write_job(tmp_path, digits, few, epochs=1), tmp_path / "out2")
    assert r.returncode == 2 and "the dataset has 10 classes" in r.stdout


# -- datasets -------------------------------------------------------------------------


def test_numpy_layouts(tmp_path: Path) -> None:
    x = np.arange(200, dtype=np.float32).reshape(50, 4)
    y = np.arange(50) % 3
    np.savez(tmp_path / "all.npz", X=x, labels=y)
    s = data.load(tmp_path, "numpy", test_fraction=0.2, seed=1)
    assert (len(s.x_train), len(s.x_test)) == (40, 10) and s.classification
    assert sorted(np.concatenate([s.y_train, s.y_test]).tolist()) == sorted(y.tolist())
    again = data.load(tmp_path, "numpy", test_fraction=0.2, seed=1)
    assert np.array_equal(again.x_test, s.x_test)  # the split follows the seed
    d2 = tmp_path / "npy"
    d2.mkdir()
    np.save(d2 / "x.npy", x)
    np.save(d2 / "y.npy", y.astype(np.float64) + 0.5)
    assert not data.load(d2, "numpy", test_fraction=0.5, seed=0).classification  # regression


def test_csv_with_a_header_and_a_label_column(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("a,label,b\n1,0,2\n3,1,4\n5,0,6\n")
    (tmp_path / "test.csv").write_text("a,label,b\n7,1,8\n")
    s = data.load(tmp_path, "csv", test_fraction=0.2, seed=0)
    assert s.x_train.tolist() == [[1, 2], [3, 4], [5, 6]] and s.y_train.tolist() == [0, 1, 0]
    assert s.x_test.tolist() == [[7, 8]]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "t.csv").write_text("1,2\nx,3\n")
    with pytest.raises(data.DataError, match="every value must be a number"):
        data.load(tmp_path / "bad", "csv", test_fraction=0.5, seed=0)


def test_image_folders(tmp_path: Path) -> None:
    Image = pytest.importorskip("PIL.Image")
    for cls, value in (("cat", 10), ("dog", 200)):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((6, 5), value + i, dtype=np.uint8)).save(
                tmp_path / cls / f"{i}.png"
            )
    s = data.load(tmp_path, "image-folder", test_fraction=0.34, seed=0)
    assert s.classes == ("cat", "dog") and s.x_train.shape[1:] == (1, 6, 5)
    assert len(s.x_train) + len(s.x_test) == 6


def test_what_a_wrong_dataset_folder_says(tmp_path: Path) -> None:
    with pytest.raises(data.DataError, match="does not exist in the container"):
        data.load(tmp_path / "nope", "numpy", test_fraction=0.2, seed=0)
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(data.DataError, match=r"expected train.npz \+ test.npz.*found readme.txt"):
        data.load(tmp_path, "numpy", test_fraction=0.2, seed=0)
    with pytest.raises(data.DataError, match="cannot be trained on; allowed: numpy, csv"):
        data.load(tmp_path, "parquet", test_fraction=0.2, seed=0)
