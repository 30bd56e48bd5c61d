"""A real PostgreSQL server for the tests: one per test session, in a temporary folder, on a free
loopback port, stopped at the end (conftest's `pg` fixture).

The binaries come from Debian's packages (`/usr/lib/postgresql/*/bin`; .ci/run installs them in
CI). Without them the PostgreSQL tests are skipped locally and fail in CI (`CI` set). initdb
refuses to run as root: as root, everything runs as the `postgres` user (Debian's package makes
it) through `runuser`, in a folder that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

START_TIMEOUT_S = 30


def pg_bin() -> Path | None:
    """The newest PostgreSQL's bin folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """`initdb` + `pg_ctl start`; `database()` makes a fresh database and returns its URL."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="bmo-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = "bmo"
        self._n = 0
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres", "postgres")
        self.running = False

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        subprocess.run(
            [*self._as, *args], check=True, timeout=timeout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd="/"
        )

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8",
                  "--no-sync")  # fmt: skip
        self.restart()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def database(self) -> str:
        """A new empty database (one per test: nothing leaks between tests); its URL."""
        self._n += 1
        name = f"t{os.getpid()}_{self._n}_{int(time.time() * 1000) % 100000}"
        subprocess.run(
            [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name],
            check=True, timeout=START_TIMEOUT_S, capture_output=True,
        )  # fmt: skip
        return self.url(name)

    def stop(self) -> None:
        if self.running:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def kill(self) -> None:
        """Stop the server now (the database goes away under whoever uses it); `restart` brings it back."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self.running = False

    def restart(self) -> None:
        # fsync off: a test server needs no crash safety against the OS, only against its own kill
        # (`kill` is an immediate stop: what it committed is in the WAL, in the OS's cache)
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off -c max_connections=300"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"),
                  "-w", "-t", str(START_TIMEOUT_S), "start")  # fmt: skip
        self.running = True
