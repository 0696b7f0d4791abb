"""A real PostgreSQL server for the tests: initdb into a temporary folder, listen on a
loopback port, trust authentication, stopped at the end."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .ports import free_base_port


def _bindir() -> Path | None:
    for cand in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (cand / "initdb").exists():
            return cand
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class Postgres:
    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            raise RuntimeError(
                "PostgreSQL server not installed (tests/run.sh installs Debian's postgresql)"
            )
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="gpupool-pg-"))
        self.data = self.root / "data"
        self.port = free_base_port((0,))
        self.user = "postgres"
        # initdb refuses to run as root; run the server as the postgres system user.
        self._as: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, text=True)

    def start(self) -> Postgres:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            self.user,
            "-E",
            "UTF8",
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off",
            "start",
        )
        return self

    def create_database(self, name: str) -> str:
        deadline = time.monotonic() + 30
        while True:
            r = subprocess.run(
                [
                    str(self.bindir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    self.user,
                    name,
                ],
                capture_output=True,
                text=True,
            )
            if r.returncode == 0 or "already exists" in r.stderr:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"createdb {name} failed: {r.stderr}")
            time.sleep(0.5)
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
            )
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
