"""What a training's container gets, decided without I/O: its name, its command, the
files put into the user's home before it starts, and how its log lines are read.

The container itself is ``build_container`` with ``kind="training"``: the same HAMi-core
slicing, limits and isolation as a notebook server, the user's home volume for outputs,
and only the dataset the training names, read-only.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from dataclasses import dataclass
from typing import IO, Any

from ...lab.train.job import ERROR_MARK, METRIC_MARK, OUTPUT_ROOT

UID, GID = 1000, 100  # jovyan:users, as in the images
CHECKPOINT_RE = re.compile(r"checkpoints/epoch-\d{4,6}\.pt")
_TS = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z")


def container_name(training_id: str, attempt: int) -> str:
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


def timestamp_ns(text: str) -> int | None:
    """Docker's RFC 3339 timestamp (nanoseconds, trailing zeros trimmed) as integer ns."""
    import calendar

    m = _TS.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    frac = (m.group(7) or "").ljust(9, "0")
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 1_000_000_000 + int(frac)


@dataclass
class LogBatch:
    """New lines of a container's log, sorted into metrics, an error and plain text."""

    cursor: int
    records: list[dict[str, Any]]
    text: list[str]


def read_log(raw: bytes, cursor: int) -> LogBatch:
    """Parse ``docker logs --timestamps`` output, keeping only lines after ``cursor`` (ns).
    Metric lines become records; the runner's error line a record of kind ``error``;
    a metric line that is not a JSON object is kept as text."""
    out = LogBatch(cursor, [], [])
    for line in raw.decode("utf-8", "replace").splitlines():
        stamp, _, text = line.partition(" ")
        ns = timestamp_ns(stamp)
        if ns is None:  # a continuation without a timestamp: keep it as text
            out.text.append(line)
            continue
        if ns <= cursor:
            continue
        out.cursor = max(out.cursor, ns)
        rec: Any = None
        if text.startswith(METRIC_MARK) or text.startswith(ERROR_MARK):
            try:
                rec = json.loads(text.split(" ", 1)[1])
            except ValueError:
                rec = None
        if isinstance(rec, dict) and text.startswith(ERROR_MARK):
            out.records.append({"kind": "error", "message": str(rec.get("message", ""))[:2000]})
            out.text.append(f"error: {rec.get('message', '')}")
        elif isinstance(rec, dict) and isinstance(rec.get("kind"), str):
            out.records.append(rec)
        else:
            out.text.append(text)
    return out
