"""`bmo serve` as a real process, the way a newcomer runs it (shared by the process tests)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def serve_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BMO_", "OPENAI_"))}
    env.update(BMO_HOME=str(home), COLUMNS="200", PYTHONPATH=str(ROOT / "internal"), **extra)
    return env


class Served:
    """`bmo serve --port 0` until its banner is out; then stopped with SIGTERM."""

    def __init__(self, home: Path, *args: str, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bmo", "serve", "--port", "0", *args],
            env=serve_env(home, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C" in line:
                break
        self.banner = "".join(lines)
        m = re.search(r"serving on (http://127\.0\.0\.1:\d+/v1)", self.banner)
        assert m, self.banner + self.stop()
        self.url = m.group(1)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def run_bmo(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m bmo ARGS` on `home` to completion (bounded), output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "bmo", *args], env=serve_env(home, **env), capture_output=True, text=True, timeout=30
    )
