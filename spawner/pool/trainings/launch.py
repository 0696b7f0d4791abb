"""What a training's container gets, decided without I/O: its name, its command and the
files put into the user's home before it starts. (How its log is read: output.py.)

The container itself is ``build_container`` with ``kind="training"``: the same HAMi-core
slicing, limits and isolation as a notebook server, the user's home volume for outputs,
and only the dataset the training names, read-only.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from typing import IO, Any

from gpupool.job import OUTPUT_ROOT

# how a log is read moved to output.py; the old names stay importable
from .output import LogBatch, read_log, timestamp_ns  # noqa: F401

UID, GID = 1000, 100  # jovyan:users, as in the images


def training_container_name(training_id: str, attempt: int) -> str:
    return f"gpupool-train-{training_id}-{attempt}"


def job_path(training_id: str) -> str:
    return f"{OUTPUT_ROOT}/{training_id}/job.json"


def command(training_id: str, processes: int) -> list[str]:
    """The runner, under torchrun when the training runs data-parallel."""
    runner = ["-m", "gpupool.lab.train.runner", "--job", job_path(training_id)]
    if processes <= 1:
        return ["gpupool-train", "--job", job_path(training_id)]
    return ["torchrun", "--standalone", f"--nproc_per_node={processes}", *runner]


def _info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.uid, info.gid, info.uname, info.gname = UID, GID, "jovyan", "users"
    info.mtime = int(time.time())  # else 1970 in the file browser
    return info


def _entry(tar: tarfile.TarFile, name: str, data: bytes | None = None, mode: int = 0o755) -> None:
    info = _info(name)
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, mode
        tar.addfile(info)
    else:
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))


def job_archive(
    training_id: str,
    job: dict[str, Any],
    out: IO[bytes],
    checkpoint: tuple[str, IO[bytes], int] | None = None,
) -> None:
    """A tar for docker's put_archive into the home folder: ``trainings/<id>/job.json``
    and, when resuming, ``trainings/<id>/checkpoints/<name>`` (name, stream, size), all
    owned by the container's user."""
    base = f"trainings/{training_id}"
    with tarfile.open(fileobj=out, mode="w") as tar:
        _entry(tar, "trainings")
        _entry(tar, base)
        _entry(tar, f"{base}/checkpoints")
        _entry(tar, f"{base}/job.json", json.dumps(job, indent=1).encode())
        if checkpoint is not None:
            name, stream, size = checkpoint
            info = _info(f"{base}/checkpoints/{name}")
            info.size, info.mode = size, 0o644
            tar.addfile(info, stream)
