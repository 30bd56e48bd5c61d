"""The stdio transport of an MCP server (layer 2; used by bmo.tools.mcp only).

bmo spawns the configured `command` in a new session (so it leads its own process group) and
speaks JSON-RPC with it, one UTF-8 JSON message per line. What this module guarantees:

- The child sees a minimal environment: PATH and HOME, the locale and terminal variables that
  command-line tools expect (INHERITED below), and the server's configured `env` (`${VAR}`
  expanded by the owner at each start). Nothing else of bmo's environment (provider API keys…) leaks into it; this is
  what the official MCP SDK does too.
- stdout is read continuously; a line longer than MAX_LINE ends the connection.
- stderr is drained continuously (a full pipe would block the child) into the `bmo.mcp` logger,
  rate-limited and truncated, so a server that floods it neither deadlocks nor floods the log.
- EOF on stdout or the child's exit is noticed at once and fails every in-flight request.
- `close()` closes stdin, waits, SIGTERMs the whole process group, waits, SIGKILLs it: no child
  or grandchild survives (`npx` and `uvx` run the real server as a grandchild).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from bmo.config import McpServerConfig
from bmo.tools.jsonrpc import RpcSession, TransportError

log = logging.getLogger("bmo.mcp")

# What the child inherits from bmo's environment when set: PATH and HOME (needed to find and run
# anything), LANG/LC_ALL (text encoding of the child's I/O), TERM, USER/LOGNAME/SHELL (read by
# some CLIs at start-up). The MCP SDK inherits HOME, LOGNAME, PATH, SHELL, TERM, USER.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "LOGNAME", "SHELL")

# One message per line. 8 MiB (llama.cpp's cap) is far above any useful tool answer (results are
# cut to 100 KB for the model anyway) and bounds the memory one bad server can take. A longer
# line ends the connection: whose answer it was cannot be known, and every caller would
# otherwise wait for its timeout.
MAX_LINE = 8 * 1024 * 1024

# Shutdown, as the MCP SDK does it: after stdin is closed a well-behaved server exits within 2 s;
# after SIGTERM it gets 2 s more before SIGKILL.
STDIN_CLOSE_WAIT = 2.0
TERM_WAIT = 2.0
# After the child exits, how long its last lines may take to be read before in-flight requests fail.
EXIT_DRAIN = 0.3
# How often the child's exit is checked: polled rather than awaited, because on some Python
# versions `Process.wait()` also waits for the pipes, which a grandchild can hold open.
EXIT_POLL = 0.05

# stderr: lines cut to STDERR_LINE characters, at most STDERR_BURST lines logged per second (the
# rest counted and reported), the last STDERR_TAIL kept for the error message when it dies.
STDERR_LINE = 500
STDERR_BURST = 20
STDERR_TAIL = 5


def child_env(env: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's whole environment: INHERITED (those set) and the server's `env`, expanded."""
    environ = os.environ if environ is None else environ
    out = {k: environ[k] for k in INHERITED if k in environ}
    out.setdefault("PATH", os.defpath)
    out.update(env)
    return out


class StdioTransport:
    kind = "stdio"

    def __init__(
        self,
        name: str,
        cfg: McpServerConfig,
        sink: RpcSession,
        env: Mapping[str, str],
        redact: Callable[[str], str] = str,
    ) -> None:
        """`env`: the configured `env`, `${VAR}` already expanded; `redact` masks its secret
        values in the stderr lines we log (a server may well print its own token)."""
        self.name = name
        self.cfg = cfg
        self.sink = sink
        self._env = dict(env)
        self._redact = redact
        self.pid: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._write_lock = asyncio.Lock()
        self._stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self._closing: asyncio.Task[None] | None = None
        self._cwd = os.path.expanduser(cfg.cwd) if cfg.cwd else None

    async def start(self) -> None:
        argv = self.cfg.command
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=child_env(self._env),
                cwd=self._cwd,
                start_new_session=True,  # its own process group: close() signals all of it
                limit=MAX_LINE,
            )
        except OSError as e:
            raise TransportError(_spawn_error(argv[0], self._cwd, e)) from None
        self.pid = self._proc.pid
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read_stdout()),
            loop.create_task(self._drain_stderr()),
            loop.create_task(self._watch_exit()),
        ]

    async def send(self, msg: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise TransportError("not started")
        if self.sink.closed is not None:
            raise TransportError(self.sink.closed)
        # the MCP spec's framing: no embedded newline (json escapes them inside strings), UTF-8
        line = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace") + b"\n"
        async with self._write_lock:
            try:
                proc.stdin.write(line)
                await proc.stdin.drain()
            except (ConnectionError, RuntimeError) as e:  # broken pipe; transport closing
                raise TransportError(f"cannot write to the server: {e}") from None

    async def close(self) -> None:
        """Stop the server and its whole process group. Idempotent; concurrent callers share it."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._closing)

    def last_stderr(self) -> str:
        """The server's last few stderr lines, for an error message ("" when it wrote none)."""
        return " | ".join(self._stderr_tail)

    def _lost(self, reason: str) -> None:
        if self._stderr_tail and self.sink.closed is None:
            reason += "; last stderr: " + self.last_stderr()
        self.sink.lost(reason)

    def _exit_reason(self) -> str:
        code = self._proc.returncode if self._proc else None
        if code is None:
            return "the server closed its stdout"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"the server was killed by {signal.Signals(-code).name}"
        return f"the server exited with code {code}"

    async def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        out = self._proc.stdout
        while True:
            try:
                line = await out.readline()
            except ValueError:  # asyncio's way of saying "longer than the limit"
                # the owner closes the transport when told it is lost, which stops the server
                self._lost(f"the server sent a message longer than {MAX_LINE:,} bytes")
                return
            except ConnectionError as e:
                self._lost(f"cannot read from the server: {e}")
                return
            if not line:
                break
            line = line.strip()
            if not line:
                continue
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                # the spec forbids non-MCP output on stdout; some servers print a banner anyway
                log.warning("mcp %s: skipped a stdout line that is not JSON: %.200r", self.name, line)
                continue
            await self.sink.receive(msg)
        # EOF: give the exit a moment to be seen, so the reason can say how the server ended
        await self._exited(EXIT_DRAIN)
        self._lost(self._exit_reason())

    async def _watch_exit(self) -> None:
        proc = self._proc
        assert proc is not None
        await _until(lambda: proc.returncode is not None, float("inf"))
        # the reader normally sees EOF now; a grandchild holding stdout open would hide it
        await asyncio.sleep(EXIT_DRAIN)
        self._lost(self._exit_reason())

    async def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        err = self._proc.stderr
        buf = b""
        window, shown, hidden = time.monotonic(), 0, 0
        while chunk := await err.read(65536):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            if len(buf) > 65536:  # a "line" without end: log its start, drop the rest
                lines.append(buf)
                buf = b""
            for raw in lines:
                text = self._redact(raw.decode("utf-8", "replace").rstrip())
                if not text:
                    continue
                text = text if len(text) <= STDERR_LINE else text[:STDERR_LINE] + "…"
                self._stderr_tail.append(text[:200])
                now = time.monotonic()
                if now - window >= 1.0:
                    if hidden:
                        log.info("mcp %s stderr: (%d more lines not shown)", self.name, hidden)
                    window, shown, hidden = now, 0, 0
                if shown < STDERR_BURST:
                    shown += 1
                    log.info("mcp %s stderr: %s", self.name, text)
                else:
                    hidden += 1
        if hidden:
            log.info("mcp %s stderr: (%d more lines not shown)", self.name, hidden)

    async def _close(self) -> None:
        proc = self._proc
        self._lost("the server was stopped")
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(Exception):
                    proc.stdin.close()
            if not await self._exited(STDIN_CLOSE_WAIT):
                self._signal_group(signal.SIGTERM)
                if not await self._exited(TERM_WAIT):
                    self._signal_group(signal.SIGKILL)
                    await self._exited(TERM_WAIT)
            await self._kill_group()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        if proc is not None:
            # asyncio's Process has no close(): its transport closes itself only once every pipe
            # saw EOF, which a reader that stopped (a too-long line) never lets happen
            transport = getattr(proc, "_transport", None)
            if transport is not None:
                transport.close()

    async def _exited(self, within: float) -> bool:
        proc = self._proc
        assert proc is not None
        return await _until(lambda: proc.returncode is not None, within)

    async def _kill_group(self) -> None:
        """The leader is gone (or must go): whatever is left of its group gets SIGTERM, then SIGKILL."""
        if not self._group_alive():
            return
        self._signal_group(signal.SIGTERM)
        if not await _until(lambda: not self._group_alive(), TERM_WAIT):
            self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        pid = self.pid
        if pid is None:
            return
        try:
            if hasattr(os, "killpg") and pid != os.getpgrp():
                os.killpg(pid, sig)  # the child leads its group (start_new_session)
            elif self._proc is not None and self._proc.returncode is None:
                self._proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _group_alive(self) -> bool:
        """Whether any process of the group is still running (zombies do not count: they are
        dead, only waiting for a parent that may not be us to reap them)."""
        pid = self.pid
        if pid is None or not hasattr(os, "killpg"):
            return self._proc is not None and self._proc.returncode is None
        if sys.platform.startswith("linux"):
            return _linux_group_running(pid)
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def _spawn_error(program: str, cwd: str | None, e: OSError) -> str:
    if cwd and not os.path.isdir(cwd):
        return f"cannot start {program!r}: its cwd {cwd} is not a directory"
    if isinstance(e, FileNotFoundError):
        return f"cannot start {program!r}: no such program (PATH is bmo's)"
    return f"cannot start {program!r}: {e.strerror or e}"


async def _until(done: Callable[[], bool], within: float) -> bool:
    """Poll `done` every EXIT_POLL for up to `within` seconds; whether it became true. Polled:
    neither a process group's end nor (on every Python) a child's exit can be awaited reliably."""
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(EXIT_POLL)  # noqa: ASYNC110 (nothing to wait on: see above)
    return True


def _linux_group_running(pgid: int) -> bool:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses, so split after the last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False
