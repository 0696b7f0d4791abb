"""What a trainer container gets (pure): the command, the files put into the home, the
labels and mounts, and how its log is read back."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import yaml

from gpupool.catalog import load_catalog
from gpupool.container import build_container
from gpupool.pool.state import GpuShare
from gpupool.pool.trainings import launch


def test_command_runs_the_runner_alone_or_under_torchrun() -> None:
    assert launch.command("t-0123456789ab", 1) == [
        "gpupool-train",
        "--job",
        "/home/jovyan/trainings/t-0123456789ab/job.json",
    ]
    cmd = launch.command("t-0123456789ab", 4)
    assert cmd[:3] == ["torchrun", "--standalone", "--nproc_per_node=4"]
    assert cmd[3:6] == ["-m", "gpupool.lab.train.runner", "--job"]


def test_job_archive_puts_the_job_and_the_checkpoint_owned_by_the_user() -> None:
    buf = io.BytesIO()
    blob = b"\x00weights" * 100
    launch.job_archive("t-1", {"id": "t-1"}, buf, ("epoch-0002.pt", io.BytesIO(blob), len(blob)))
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        members = {m.name: m for m in tar}
        assert list(members) == [
            "trainings",
            "trainings/t-1",
            "trainings/t-1/checkpoints",
            "trainings/t-1/job.json",
            "trainings/t-1/checkpoints/epoch-0002.pt",
        ]
        assert all((m.uid, m.gid) == (1000, 100) for m in members.values())
        assert all(m.mtime > 1_700_000_000 for m in members.values())  # now, not 1970
        assert json.load(tar.extractfile("trainings/t-1/job.json")) == {"id": "t-1"}  # type: ignore[arg-type]
        assert tar.extractfile("trainings/t-1/checkpoints/epoch-0002.pt").read() == blob  # type: ignore[union-attr]


def test_timestamps_with_trimmed_nanoseconds() -> None:
    a = launch.timestamp_ns("2026-11-23T09:10:00.5Z")
    b = launch.timestamp_ns("2026-11-23T09:10:00.500000001Z")
    c = launch.timestamp_ns("2026-11-23T09:10:01Z")
    assert a is not None and b == a + 1 and c == a + 500_000_000
    assert launch.timestamp_ns("not a time") is None


def test_read_log_sorts_metrics_errors_and_text_and_skips_what_was_read() -> None:
    raw = (
        b"2026-11-23T09:10:00.1Z old line\n"
        b"2026-11-23T09:10:00.2Z training mlp\n"
        b'2026-11-23T09:10:00.3Z GPUPOOL-METRIC {"kind":"epoch","epoch":1,"test_accuracy":0.9}\n'
        b"2026-11-23T09:10:00.4Z GPUPOOL-METRIC {not json\n"
        b'2026-11-23T09:10:00.5Z GPUPOOL-ERROR {"message":"out of memory"}\n'
        b'2026-11-23T09:10:00.6Z GPUPOOL-METRIC ["a list"]\n'
    )
    cursor = launch.timestamp_ns("2026-11-23T09:10:00.1Z")
    assert cursor is not None
    batch = launch.read_log(raw, cursor)
    assert batch.records == [
        {"kind": "epoch", "epoch": 1, "test_accuracy": 0.9},
        {"kind": "error", "message": "out of memory"},
    ]
    assert batch.text == [
        "training mlp",
        "GPUPOOL-METRIC {not json",
        "error: out of memory",
        'GPUPOOL-METRIC ["a list"]',
    ]
    assert batch.cursor == launch.timestamp_ns("2026-11-23T09:10:00.6Z")
    assert launch.read_log(raw, batch.cursor).records == []  # nothing new


def test_a_trainer_container_is_a_sliced_container_with_only_its_dataset_read_only(
    catalog_dir: Path,
) -> None:
    ds = yaml.safe_load((catalog_dir / "datasets.yaml").read_text())
    catalog = load_catalog(catalog_dir)
    scratch = next(d for d in catalog.datasets if d.name == "shared-scratch")
    assert not scratch.read_only and ds  # writable in the catalog
    spec = catalog.spec("a100-40g")
    node = catalog.nodes[0]
    share = GpuShare(node.gpus[0].uuid, 0, 40960, 50, False)
    image = type("I", (), {"reference": "gpupool/trainer:latest"})()
    plan = build_container(
        user="ann",
        server="t-0123456789ab",
        spec=spec,  # type: ignore[arg-type]
        image=image,  # type: ignore[arg-type]
        node=node,
        reservation_id="r-1",
        gpus=(share,),
        hub_env={},
        port=20000,
        command=launch.command("t-0123456789ab", 1),
        datasets=(scratch,),
        kind="training",
        name=launch.training_container_name("t-0123456789ab", 2),
        extra_labels={"io.gpupool.training": "t-0123456789ab", "io.gpupool.attempt": "2"},
        read_only_datasets=True,
    )
    assert plan.name == "gpupool-train-t-0123456789ab-2"
    assert plan.labels["io.gpupool.kind"] == "training"
    assert plan.labels["io.gpupool.reservation"] == "r-1"
    assert plan.labels["io.gpupool.training"] == "t-0123456789ab"
    binds = plan.host_config["binds"]
    assert binds[scratch.path] == {"bind": "/datasets/shared-scratch", "mode": "ro"}
    assert binds["gpupool-home-ann"]["bind"] == "/home/jovyan"
    env = plan.environment
    assert env["CUDA_DEVICE_MEMORY_LIMIT_0"] == "40960m" and env["CUDA_DEVICE_SM_LIMIT_0"] == "50"
    assert plan.host_config["cap_drop"] == ["ALL"] and not plan.host_config["privileged"]


def test_where_a_training_runs_in_words() -> None:
    from gpupool.pool.state import describe_shares

    half = GpuShare("GPU-a", 1, 40960, 50, False)
    assert describe_shares((half,), 50) == "GPU 1 (40 GiB, 50 % SM)"
    assert describe_shares((half,), None) == "GPU 1 (40 GiB)"
    whole = (GpuShare("GPU-a", 0, 81920, 100, True), GpuShare("GPU-b", 1, 81920, 100, True))
    assert describe_shares(whole, None) == "GPUs 0, 1 (whole)"
    assert describe_shares((), None) == "no GPU"
