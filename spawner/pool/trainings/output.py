"""A training's output, as the pool reads it from its container's log: bounded and checked.

What a container prints is its user's. A pass reads at most MAX_READ_BYTES of each
training's new output (``docker logs --timestamps --since``, a stream cut short), splits
it at docker's own line ends, and sorts the lines: records (GPUPOOL-METRIC, checked
against the contract in ``gpupool.job``), the runner's error, and text for the
training's log. A record that breaks the contract is dropped, kept as text and counted;
the dispatcher reports the count as a warning on that training. Pure code: the stream
is handed in.

A checkpoint is copied out of the container by the name its record gives, into the
training's own folder (save_checkpoint): what the engine's archive holds decides no path.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpupool.job import (
    ERROR_MARK,
    MAX_RECORD_CHARS,
    METRIC_MARK,
    RecordError,
    check_error,
    check_record,
)

MAX_READ_BYTES = 1024 * 1024  # of one training's output per pass
TAIL_LINES = 50  # of an ended training not caught up with: 50 x 16 KiB (docker's split) fit
MAX_TEXT_LINE = 16 * 1024  # characters of one line kept for the log
SINCE_MARGIN_NS = 1_000_000  # ``since`` goes as a float: read 1 ms early, skip what was read
MAX_PROBLEMS = 3  # of a pass's dropped lines, said in its warning
TAR_SLACK = 1024 * 1024  # a checkpoint's archive: the file plus tar headers and padding
TOO_LARGE = "too large"
_TS = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z")


def timestamp_ns(text: str) -> int | None:
    """Docker's RFC 3339 timestamp (nanoseconds, trailing zeros trimmed) as integer ns;
    None for anything else, or for a time the database's BIGINT cannot hold."""
    m = _TS.fullmatch(text)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    frac = (m.group(7) or "").ljust(9, "0")
    ns = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 1_000_000_000 + int(frac)
    return ns if 0 <= ns < 2**63 else None


def since(cursor: int) -> float | None:
    """The ``since`` for docker's logs after ``cursor`` (ns), a little early: docker-py
    sends a float, which is exact to about a quarter of a microsecond."""
    if cursor <= SINCE_MARGIN_NS:
        return None
    return (cursor - SINCE_MARGIN_NS) / 1e9


def read_capped(stream: Iterable[bytes], limit: int = MAX_READ_BYTES) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of ``stream`` (docker-py's log stream, closed here), cut
    after the last whole line when there was more. True when it was cut."""
    buf = bytearray()
    cut = False
    try:
        for chunk in stream:
            buf += chunk
            if len(buf) > limit:
                cut = True
                break
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):  # what was read is good all the same
                close()
    if not cut:
        return bytes(buf), False
    end = buf.rfind(b"\n", 0, limit)
    return bytes(buf[: end + 1] if end >= 0 else buf[:limit]), True


@dataclass
class LogBatch:
    """New lines of a container's log, sorted into records, text and dropped lines."""

    cursor: int
    records: list[dict[str, Any]]
    text: list[str]
    dropped: int = 0  # marked lines that broke the contract
    problems: list[str] = field(default_factory=list)  # the first few, said why
    seen: int = 0  # lines at or before the cursor it started from (read before)

    def drop(self, why: str) -> None:
        self.dropped += 1
        if len(self.problems) < MAX_PROBLEMS and why not in self.problems:
            self.problems.append(why)

    def follow(self, last: LogBatch) -> None:
        """``last``, the last lines of the log read after this batch's, appended."""
        if not last.seen:  # nothing overlaps: some lines in between were not read
            self.text.append("[gpupool] output skipped: more than a pass reads; its end follows")
        self.cursor = max(self.cursor, last.cursor)
        self.records += last.records
        self.text += last.text
        self.dropped += last.dropped
        new = [why for why in last.problems if why not in self.problems]
        self.problems += new[: MAX_PROBLEMS - len(self.problems)]

    def skip(self, cursor: int) -> None:
        """Past ``cursor``, when more than a pass reads lies within ``since``'s margin:
        else every pass would read the same bytes again."""
        self.cursor = cursor + 2 * SINCE_MARGIN_NS
        self.text.append("[gpupool] output skipped: more than a pass reads within 2 ms")

    def warning(self) -> str | None:
        """What the training's owner is told about the lines dropped, if any."""
        if not self.dropped:
            return None
        n = self.dropped
        return (
            f"{n} malformed metric line{'' if n == 1 else 's'} dropped "
            f"(kept as text in the log): {'; '.join(self.problems)}"
        )


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT_LINE else text[:MAX_TEXT_LINE] + " [line cut]"


def _record(body: str, error: bool) -> dict[str, Any]:
    if len(body) > MAX_RECORD_CHARS:
        raise RecordError(f"a line over {MAX_RECORD_CHARS} characters")
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):  # deep nesting is a RecursionError
        raise RecordError("not JSON") from None
    return check_error(obj) if error else check_record(obj)


def read_log(raw: bytes, cursor: int) -> LogBatch:
    """Parse ``docker logs --timestamps`` output, keeping only lines after ``cursor`` (ns).
    Only docker's newline ends a line (a carriage return or a Unicode line separator is
    the user's, inside one). Checked metric lines become records; the runner's error
    line a record of kind ``error``; a marked line that breaks the contract is counted
    and kept as text."""
    out = LogBatch(cursor, [], [])
    for piece in raw.split(b"\n"):
        if not piece:
            continue
        line = piece.decode("utf-8", "replace")
        stamp, _, text = line.partition(" ")
        ns = timestamp_ns(stamp)
        if ns is None:  # a continuation without a timestamp: keep it as text
            out.text.append(_cut(line))
            continue
        if ns <= cursor:
            out.seen += 1
            continue
        out.cursor = max(out.cursor, ns)
        mark = next((m for m in (METRIC_MARK, ERROR_MARK) if text.startswith(m)), None)
        if mark is None:
            out.text.append(_cut(text))
            continue
        try:
            rec = _record(text[len(mark) :], error=mark == ERROR_MARK)
        except RecordError as e:
            out.drop(str(e))
            out.text.append(_cut(text))
            continue
        out.records.append(rec)
        if rec["kind"] == "error":
            out.text.append(f"error: {rec['message']}")
    return out


def save_checkpoint(
    stream: Iterable[bytes], stat: dict[str, Any], target: Path, limit: int
) -> str | None:
    """The one regular file of a checkpoint's archive (docker's get_archive) saved as
    ``target``, whatever name or link the archive gives it. None when saved, else why not
    (TOO_LARGE: over ``limit`` bytes, counted as they arrive: a folder of gigabytes in its
    place answers a small stat)."""
    if int(stat.get("size", 0)) > limit:
        return TOO_LARGE
    with tempfile.TemporaryFile() as f:
        got = 0
        for chunk in stream:
            got += len(chunk)
            if got > limit + TAR_SLACK:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
                return TOO_LARGE
            f.write(chunk)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            member = tar.next()
            if member is None or not member.isfile():
                return "it is not a regular file"
            if member.size > limit:
                return TOO_LARGE
            src = tar.extractfile(member)
            assert src is not None
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".part")
            with tmp.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(target)
    for old in target.parent.glob("epoch-*.pt"):
        if old.name != target.name:
            old.unlink(missing_ok=True)
    return None
