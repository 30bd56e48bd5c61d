"""What the MCP client tests share: configs for the fixture servers, and a tracker that stops
every server a test started and kills whatever it left behind, even when the test failed.

Each stdio fixture server appends its pid (and its grandchild's) to a file named by
$MCP_FIXTURE_PIDS, which the tracker sets; so the tracker knows every process a test caused,
restarts included, and never needs to look processes up by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bmo.config import McpServerConfig
from bmo.tools.mcp import McpServer
from bmo.tools.registry import ToolRegistry

FIXTURE = Path(__file__).with_name("stdio_server.py")


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie is dead: it only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X")


def received(log: Path) -> list[dict[str, Any]]:
    """Every message a stdio fixture server received, in order."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


async def eventually(check: Callable[[], Any], within: float = 5.0) -> Any:
    """Poll `check` until it returns something truthy (returned) or `within` seconds pass (None)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = check()
        if value or loop.time() >= deadline:
            return value
        await asyncio.sleep(0.02)


class Tracker:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.pidfile = tmp / "pids.txt"
        self._servers: list[McpServer] = []
        self._registries: list[ToolRegistry] = []
        self._logs = 0

    def log(self) -> Path:
        self._logs += 1
        return self.tmp / f"received{self._logs}.jsonl"

    def stdio(
        self, *args: str, log: Path | None = None, env: Mapping[str, str] | None = None, **kw: Any
    ) -> McpServerConfig:
        e = {"MCP_FIXTURE_PIDS": str(self.pidfile), **(env or {})}
        if log is not None:
            e["MCP_FIXTURE_LOG"] = str(log)
        return McpServerConfig(command=[sys.executable, str(FIXTURE), *args], env=e, **kw)

    def server(self, name: str, cfg: McpServerConfig) -> McpServer:
        s = McpServer(name, cfg)
        self._servers.append(s)
        return s

    def registry(self, servers: Mapping[str, McpServerConfig]) -> ToolRegistry:
        r = ToolRegistry(servers)
        self._registries.append(r)
        return r

    def pids(self) -> list[int]:
        if not self.pidfile.exists():
            return []
        return [int(p) for p in self.pidfile.read_text().split()]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(20):
                await asyncio.gather(*(s.close() for s in self._servers), *(r.close() for r in self._registries))
        for pid in self.pids():  # the safety net: nothing a test started outlives it
            if alive(pid):
                for kill in (os.killpg, os.kill):
                    with contextlib.suppress(OSError):
                        kill(pid, signal.SIGKILL)
