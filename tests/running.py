"""bmo served as `bmo serve` serves: through `bmo.server.serve.serve` (its own listener, the
connection limits, the drain), in the tests' loop thread (`Serving`) or as a real process with
an open-file limit of its own (`ServeProcess`); and what a process holds (`rss_kb`, `fds`).

tests/fakes.py's `BmoServer` runs the app on aiohttp's plain TCPSite, which is right for
everything above the connection; the tests of connections, parse errors and shutdown use these.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from aiohttp import web

from bmo.config import load_config
from bmo.runtime import Runtime
from bmo.server.app import make_app
from bmo.server.serve import serve
from fakes import LoopThread
from served import serve_env


def write_home(home: Path, config: str, agents: dict[str, str] | None = None) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(config)
    if agents:
        (home / "agents").mkdir(exist_ok=True)
        for name, text in agents.items():
            (home / "agents" / f"{name}.yaml").write_text(text)
    return home


class Serving:
    """`serve()` on 127.0.0.1:0 in the loop thread, until `stop()` (the drain included)."""

    def __init__(
        self,
        loop: LoopThread,
        home: Path,
        config: str,
        agents: dict[str, str] | None = None,
        grace: float = 1.0,
        env_api_key: str | None = None,
    ) -> None:
        write_home(home, config, agents)
        self.loop = loop
        self.runtime = Runtime(load_config(home, env={}))
        self.app: web.Application = make_app(self.runtime, env_api_key=env_api_key)
        self.grace = grace
        self.url = ""
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Future[None] | None = None

    def start(self) -> Serving:
        async def begin() -> int:
            ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._stop = asyncio.Event()
            self._task = asyncio.ensure_future(
                serve(
                    self.app,
                    "127.0.0.1",
                    0,
                    shutdown_grace_s=self.grace,
                    on_ready=lambda _h, p: ready.done() or ready.set_result(p),
                    stop=self._stop,
                )
            )
            await asyncio.wait([ready, self._task], return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                self._task.result()  # raises what stopped it
            return ready.result()

        self.url = f"http://127.0.0.1:{self.loop.run(begin())}"
        return self

    def stop(self) -> None:
        async def end() -> None:
            assert self._stop is not None and self._task is not None
            self._stop.set()
            await self._task

        self.loop.run(end(), timeout=30)


class ServeProcess:
    """`python -m bmo serve --port 0` on `home`, optionally under an open-file limit."""

    def __init__(self, home: Path, *, nofile: int | None = None, **env: str) -> None:
        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bmo", "serve", "--port", "0"],
            env=serve_env(home, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limit,
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
        m = re.search(r"serving on (http://127\.0\.0\.1:\d+)/v1", "".join(lines))
        if not m:
            self.proc.kill()
            raise AssertionError("".join(lines) + self.proc.communicate()[1])
        self.url = m.group(1)
        self.pid = self.proc.pid
        # Read its output as it comes: a full pipe would block bmo's writes to stderr (the access
        # log) and with them its event loop.
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=_drain, args=(self.proc.stderr, self._err), daemon=True),
            threading.Thread(target=_drain, args=(self.proc.stdout, []), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def terminate(self, timeout: float = 30) -> tuple[int, str, float]:
        """SIGTERM; (exit code, stderr, seconds from the signal to the exit)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        took = time.monotonic() - t0
        return self.proc.returncode, self.stderr(), took

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr()

    def stderr(self) -> str:
        """Everything it wrote to stderr (once it has exited: all of it)."""
        if self.proc.poll() is not None:
            for t in self._readers:
                t.join(10)
        return "".join(self._err)


def _drain(stream: IO[str] | None, into: list[str]) -> None:
    if stream is None:
        return
    for line in stream:
        into.append(line)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
